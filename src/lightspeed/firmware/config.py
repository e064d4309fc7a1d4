"""Options of firmware generation (shared by the Verilog and HLS writers and the estimate)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from lightspeed.errors import ConfigError

MULTIPLIERS = ("auto", "dsp", "lut")
TARGETS = ("verilog", "hls")
IO_MODES = ("parallel", "stream")


@dataclass(frozen=True)
class FirmwareOptions:
    """How to build the datapath.

    ``clock_period`` (ns) decides how many adder levels fit between pipeline
    registers; ``multipliers``: ``dsp`` writes ``*`` for every non-trivial
    constant product (synthesis maps them to DSP slices), ``lut`` writes
    canonical-signed-digit shift-and-add networks, ``auto`` uses shift-and-add
    for constants with at most ``lut_max_digits`` non-zero digits and ``*`` beyond;
    ``share_adders``: common subexpressions across a layer's outputs are built once.
    """

    clock_period: float = 5.0
    multipliers: str = "auto"
    lut_max_digits: int = 3
    top: str = "lightspeed_top"
    # compute sums of term pairs shared by several outputs of a weight matrix once
    # (lightspeed.firmware.verilog.cse); bit-exact either way
    share_adders: bool = True
    # "parallel": every output in its own hardware (II = 1); "stream": convolutions one
    # pixel per clock through line buffers (lightspeed.firmware.verilog.stream)
    io: str = "parallel"
    # reuse factor (lightspeed.firmware.reuse): every dense layer computes its outputs in
    # ``reuse`` groups on shared multipliers, one group per clock (II = reuse); per layer
    # ``layer_reuse`` ((name, factor), ...) or the node attribute ``reuse`` wins
    reuse: int = 1
    layer_reuse: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not (
            isinstance(self.clock_period, int | float)
            and math.isfinite(self.clock_period)
            and self.clock_period > 0
        ):
            raise ConfigError(
                f"clock period {self.clock_period!r} ns is not a positive number; "
                "give e.g. --clock-period 5 (200 MHz)"
            )
        if self.multipliers not in MULTIPLIERS:
            raise ConfigError(
                f"unknown multiplier style {self.multipliers!r}; use one of {', '.join(MULTIPLIERS)}"
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.top):
            raise ConfigError(f"top module name {self.top!r} is not a Verilog identifier")
        if self.io not in IO_MODES:
            raise ConfigError(f"unknown io mode {self.io!r}; use one of {', '.join(IO_MODES)}")
        if self.lut_max_digits < 1:
            raise ConfigError("lut_max_digits must be at least 1")
        for name, rf in (("", self.reuse), *self.layer_reuse):
            if isinstance(rf, bool) or not isinstance(rf, int) or rf < 1:
                where = f" of layer {name!r}" if name else ""
                raise ConfigError(
                    f"reuse factor{where} {rf!r} is not a positive integer; give e.g. --reuse 4"
                )

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / self.clock_period

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_clock(text: str | float) -> float:
    """``5``, ``5ns``, ``4.0`` (ns) or ``200MHz`` -> period in ns; clear error otherwise."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(ns|mhz|MHz|MHZ)?\s*", str(text))
        if not m:
            raise ConfigError(
                f"cannot read clock {text!r}; give a period in ns (e.g. 5 or 5ns) or a frequency (200MHz)"
            )
        value = float(m.group(1))
        if m.group(2) and m.group(2).lower() == "mhz":
            if value <= 0:
                raise ConfigError(f"clock frequency {text!r} must be positive")
            value = 1000.0 / value
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"clock period {text!r} must be a positive number of ns")
    return value
