"""Instant analytic resource estimate (LUT, FF, DSP, CARRY, BRAM) from the lowered netlist.

Every net of the netlist (see :mod:`lightspeed.firmware.netlist`) has an exact
width, so the cost model is a sum over nets of a few per-bit coefficients:
adders cost about one LUT per bit plus a CARRY8 per 8 bits, saturation a
compare and a mux, registers one flip-flop per bit, constant multiplies a
DSP48E2 per 27x18 tile, ROMs ``ceil(2**addr / 64)`` LUT6 per output bit.
The coefficients below were fitted to Yosys ``synth_xilinx -family xcup`` on
small layers (``benchmarks/firmware.py --calibrate``); the measured error is
documented in docs/firmware.md. Yosys counts differ from Vivado's (Vivado
packs more logic per LUT and retimes), so treat both as estimates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lightspeed.firmware.netlist import Netlist

# fitted to Yosys 0.5x-0.7x synth_xilinx -family xcup (see module docstring)
COEF = {
    "add_lut_per_bit": 1.0,
    "sat_lut_per_bit": 1.0,  # compare + mux of a saturating cast, per output bit
    "round_lut_per_bit": 1.0,  # rounding increment adder, per bit
    "relu_lut_per_bit": 0.5,
    "max_lut_per_bit": 1.5,
    "mux_lut_per_bit": 1.0,
    "rom_lut_per_bit_per_64": 1.2,
    "ff_per_reg_bit": 1.0,
    "lut_mult_per_bit2": 0.55,  # LUT-mapped multiplier, per product of operand widths
}
DSP_A, DSP_B = 27, 18  # DSP48E2 signed multiplier tile
DSP_MIN_WIDTH = 9  # Yosys keeps products narrower than this in LUTs


@dataclass
class Estimate:
    lut: float = 0.0
    ff: float = 0.0
    dsp: float = 0.0
    carry: float = 0.0
    bram: float = 0.0
    latency: int = 0
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("lut", "ff", "dsp", "carry", "bram"):
            d[k] = round(d[k])
        d["per_layer"] = {
            k: {kk: round(vv) for kk, vv in v.items()} for k, v in self.per_layer.items()
        }
        return d


def _mult_cost(wa: int, wb: int, out_w: int) -> tuple[float, float]:
    """(DSPs, LUTs) of a wa x wb multiplier the way synth_xilinx maps it."""
    a, b = max(wa, wb), min(wa, wb)
    if b < 2 or out_w < DSP_MIN_WIDTH:
        return 0.0, COEF["lut_mult_per_bit2"] * wa * wb
    if a <= DSP_A and b <= DSP_B:
        return 1.0, 0.0
    return float(math.ceil(a / (DSP_A - 1)) * math.ceil(b / (DSP_B - 1))), out_w * 1.0


def estimate_netlist(nl: Netlist, latency: int = 0) -> Estimate:
    est = Estimate(latency=latency)
    c = COEF
    for n in nl.nets:
        w = n.width
        lut = ff = dsp = carry = 0.0
        op = n.op
        if op in ("add", "neg"):
            lut, carry = c["add_lut_per_bit"] * w, math.ceil(w / 8)
        elif op == "reg":
            ff = c["ff_per_reg_bit"] * w
        elif op == "cast":
            src = nl.nets[n.args[0]].width
            if n.attrs["shift"] > 0 and n.attrs["rounding"] != "TRN":
                qb = max(src - n.attrs["shift"], 1)
                lut += c["round_lut_per_bit"] * qb
                carry += math.ceil(qb / 8)
            t = n.attrs["ovf"]
            if t is not None and t.overflow != "WRAP":
                lut += c["sat_lut_per_bit"] * w
        elif op == "clamp":
            lut = c["relu_lut_per_bit"] * w * (2 if n.attrs["cmin"] not in (None, 0) or n.attrs["cmax"] is not None else 1)
        elif op == "max":
            lut, carry = c["max_lut_per_bit"] * w, math.ceil(w / 8)
        elif op == "selpos":
            lut = c["mux_lut_per_bit"] * w
        elif op == "mulc":
            wa = nl.nets[n.args[0]].width
            wb = max(abs(n.attrs["c"]).bit_length() + 1, 2)
            dsp, lut = _mult_cost(wa, wb, w)
        elif op == "mul":
            dsp, lut = _mult_cost(nl.nets[n.args[0]].width, nl.nets[n.args[1]].width, w)
        elif op == "rom":
            entries = len(nl.roms[n.attrs["rom"]])
            lut = c["rom_lut_per_bit_per_64"] * w * max(1, math.ceil(entries / 64))
        est.lut += lut
        est.ff += ff
        est.dsp += dsp
        est.carry += carry
        layer = est.per_layer.setdefault(n.layer or "io", {"lut": 0.0, "ff": 0.0, "dsp": 0.0})
        layer["lut"] += lut
        layer["ff"] += ff
        layer["dsp"] += dsp
    # the valid pipeline
    est.ff += latency
    return est


def estimate_design(design) -> Estimate:
    return estimate_netlist(design.nl, design.latency)
