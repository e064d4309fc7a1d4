"""FPGA device capacities (from the vendors' product tables) and their Yosys family."""

from __future__ import annotations

from dataclasses import dataclass

from lightspeed.errors import ConfigError


@dataclass(frozen=True)
class Part:
    name: str
    family: str  # synth_xilinx -family
    lut: int
    ff: int
    dsp: int
    bram36: int  # 36 Kb block RAMs
    description: str = ""


PARTS: dict[str, Part] = {
    p.name: p
    for p in (
        Part(
            "xcvu9p",
            "xcup",
            1_182_240,
            2_364_480,
            6_840,
            2_160,
            "Virtex UltraScale+ VU9P (CMS L1T, VCU118)",
        ),
        Part(
            "xcvu13p",
            "xcup",
            1_728_000,
            3_456_000,
            12_288,
            2_688,
            "Virtex UltraScale+ VU13P (Alveo U250-class)",
        ),
        Part("xcvu7p", "xcup", 788_160, 1_576_320, 4_560, 1_440, "Virtex UltraScale+ VU7P"),
        Part("xcu250", "xcup", 1_728_000, 3_456_000, 12_288, 2_688, "Alveo U250"),
        Part("xcu50", "xcup", 871_680, 1_743_360, 5_952, 1_344, "Alveo U50"),
        Part("xczu9eg", "xcup", 274_080, 548_160, 2_520, 912, "Zynq UltraScale+ ZU9EG (ZCU102)"),
        Part("xcku15p", "xcup", 522_720, 1_045_440, 1_968, 984, "Kintex UltraScale+ KU15P"),
        Part("xcku115", "xcu", 663_360, 1_326_720, 5_520, 2_160, "Kintex UltraScale KU115"),
        Part("xcvu095", "xcu", 537_600, 1_075_200, 768, 1_728, "Virtex UltraScale VU095"),
        Part("xc7vx690t", "xc7", 433_200, 866_400, 3_600, 1_470, "Virtex-7 690T (CMS L1T legacy)"),
        Part("xc7a100t", "xc7", 63_400, 126_800, 240, 135, "Artix-7 100T"),
        Part("xc7z020", "xc7", 53_200, 106_400, 220, 140, "Zynq-7000 7020 (PYNQ-Z2)"),
    )
}


def get_part(name: str) -> Part:
    key = name.lower().split("-")[0]  # accept full part numbers like xcvu9p-flga2104-2L-e
    if key in PARTS:
        return PARTS[key]
    raise ConfigError(f"unknown part {name!r}; known parts: {', '.join(PARTS)}")
