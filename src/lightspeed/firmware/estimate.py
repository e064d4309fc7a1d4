"""Instant analytic resource estimate (LUT, FF, DSP, CARRY) from the lowered netlist.

Every net of the netlist (see :mod:`lightspeed.firmware.netlist`) has an exact
width, so the model sums a few per-bit features over the live nets: adder bits
(minus the low bits a shifted operand passes through unchanged), rounding
bits, saturation bits, compare/mux bits, ROM bits, LUT-multiplier bit
products, register bits and DSP tiles. LUTs are a weighted sum of those
features; the weights in :data:`COEF` were fitted to Yosys ``synth_xilinx
-family xcup`` on small layers (``python benchmarks/firmware.py --calibrate``),
and the measured error is in docs/firmware.md. Yosys is not Vivado (no
ternary adders, no LUT combining), so treat both as estimates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lightspeed.firmware.netlist import Netlist, live_nets

# LUTs per unit of each feature; fitted against Yosys 0.70 synth_xilinx -family xcup
COEF = {
    # fitted (non-negative least squares on relative error, benchmarks/firmware.py --fit);
    # read them as a model of Yosys's mapping, not as physics: e.g. adders whose partial sums
    # wrap or pass through casts map to carry chains, exact adder trees get merged into $macc
    # cells and partly become LUT full adders
    "add_bits": 0.2,
    "exact_tree_bits": 0.867,
    "sat_bits": 0.0,  # saturation logic merges into the adders' last LUT level
    "rom_bits64": 2.921,  # per output bit per 64 entries, incl. the MUXF tree
    "dsp_out_bits": 0.472,  # LUT glue around DSP-mapped products, per result bit
    # priors (too rare in the calibration layers to fit)
    "add_bits_full": 0.0,
    "round_bits": 0.7,
    "clamp_bits": 0.5,
    "max_bits": 1.5,
    "mux_bits": 1.0,
    "lutmult_bits2": 0.55,
    "srl_bits": 1.0,  # one SRL16/SRLC32 per bit of a >= 3-deep shift chain
    # reuse factor (fitted by hand to benchmarks/results/reuse.json, 4 designs: a prior)
    "phase_rom_bits": 0.5,  # weight ROMs: functions of a few phase-counter bits
    "gate_bits": 0.0,  # inputs gated for pruned groups: the AND merges into the adder LUT
    "reuse_dsp_out_bits": 0.1,  # products with per-clock weights: Yosys packs more into DSPs
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
    ii: int = 1  # clocks between input vectors (the largest reuse factor)
    features: dict[str, float] = field(default_factory=dict)
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Rounded figures; the totals are the sums of the rounded per-layer rows."""
        d = asdict(self)
        d["per_layer"] = {
            k: {kk: round(vv) for kk, vv in v.items()} for k, v in self.per_layer.items()
        }
        for k in ("carry", "bram"):
            d[k] = round(d[k])
        for k in ("lut", "ff", "dsp"):
            d[k] = sum(r[k] for r in d["per_layer"].values()) if d["per_layer"] else round(d[k])
        return d


def _mult(wa: int, wb: int, out_w: int) -> tuple[float, float]:
    """(DSP tiles, LUT-multiplier bit products) of a wa x wb multiplier as synth_xilinx maps it."""
    a, b = max(wa, wb), min(wa, wb)
    if b < 2 or out_w < DSP_MIN_WIDTH:
        return 0.0, float(wa * wb)
    return float(
        math.ceil(a / (DSP_A - 1 + (a <= DSP_A))) * math.ceil(b / (DSP_B - 1 + (b <= DSP_B)))
    ), 0.0


def net_features(nl: Netlist, n) -> dict[str, float]:
    """Cost features of one net."""
    w = n.width
    op = n.op
    f: dict[str, float] = {}
    if op == "add":
        # the low bits of the less-shifted operand pass straight through: no LUT there
        f["add_bits"] = max(w - max(n.attrs["sha"], n.attrs["shb"]), 1)
        f["add_bits_full"] = w  # synthesis does not always exploit the pass-through bits
        if "wrap" not in n.attrs and not any(nl.nets[a].op == "cast" for a in n.args):
            # exact (non-wrapping) adder trees: Yosys merges them into $macc cells and maps
            # part of them to LUT full adders rather than carry chains
            f["exact_tree_bits"] = f["add_bits"]
        f["carry"] = math.ceil(f["add_bits"] / 8)
    elif op == "neg":
        f["add_bits"] = w
        f["add_bits_full"] = w
        f["carry"] = math.ceil(w / 8)
    elif op == "reg":
        pass  # registers are costed per shift chain in estimate_netlist (SRL extraction)
    elif op == "cast":
        src = nl.nets[n.args[0]].width
        if n.attrs["shift"] > 0 and n.attrs["rounding"] != "TRN":
            qb = max(src - n.attrs["shift"], 1)
            f["round_bits"] = qb
            f["carry"] = math.ceil(qb / 8)
        t = n.attrs["ovf"]
        if t is not None and t.overflow != "WRAP":
            f["sat_bits"] = w
    elif op == "clamp":
        both = n.attrs["cmin"] not in (None, 0) or n.attrs["cmax"] is not None
        f["clamp_bits"] = w * (2 if both else 1)
    elif op == "max":
        f["max_bits"] = w
        f["carry"] = math.ceil(w / 8)
    elif op == "selpos":
        cond = nl.nets[n.args[0]]
        if cond.op == "rom" and nl.nets[cond.args[0]].op == "phase":
            f["gate_bits"] = w  # reuse factor: an input gated for pruned groups (an AND)
        else:
            f["mux_bits"] = w
    elif op in ("mulc", "mul"):
        wa = nl.nets[n.args[0]].width
        wb = (
            max(abs(n.attrs["c"]).bit_length() + 1, 2) if op == "mulc" else nl.nets[n.args[1]].width
        )
        dsp, bits2 = _mult(wa, wb, w)
        f["dsp"] = dsp
        f["lutmult_bits2"] = bits2
        b = nl.nets[n.args[1]] if op == "mul" else None
        if dsp and b is not None and b.op == "rom" and nl.nets[b.args[0]].op == "phase":
            f["reuse_dsp_out_bits"] = w  # a reuse factor's product: its sum packs into the DSP
        elif dsp:
            f["dsp_out_bits"] = w
    elif op == "rom":
        entries = len(nl.roms[n.attrs["rom"]])
        if nl.nets[n.args[0]].op == "phase" and entries <= 64:
            # a reuse factor's weight/bias ROM: a function of the few phase-counter bits
            f["phase_rom_bits"] = w
        else:
            f["rom_bits64"] = w * max(1, math.ceil(entries / 64))
    elif op == "hold":
        f["ff"] = w  # a flip-flop with clock enable per bit (the enable is the FDRE's CE)
    elif op == "phase":
        f["mux_bits"] = w  # (counter - stage) mod II: a few LUTs
    return f


def register_features(nl: Netlist, live: list[bool]) -> dict[str, dict[str, float]]:
    """FF bits, and SRL bits for shift chains synthesis turns into SRL16/SRLC32 cells,
    per layer (the layer of the chain's first register).

    A chain of >= 3 data registers whose inner stages feed nothing else becomes
    one SRL per bit per 32 stages (Yosys ``xilinx_srl -minlen 3``, Vivado alike);
    shorter chains and tapped stages stay flip-flops.
    """
    fan = [0] * len(nl.nets)
    only: dict[int, int] = {}
    for n in nl.nets:
        if live[n.id]:
            for a in n.args:
                fan[a] += 1
                only[a] = n.id
    for p in nl.ports_out.values():
        for s in p["sigs"]:
            fan[s.net] += 1
            only[s.net] = -1
    out: dict[str, dict[str, float]] = {}
    for n in nl.nets:
        if not live[n.id] or n.op != "reg":
            continue
        src = nl.nets[n.args[0]]
        if src.op == "reg" and fan[src.id] == 1:
            continue  # not the start of a chain segment
        length, cur = 1, n.id
        while fan[cur] == 1 and only.get(cur, -1) >= 0 and nl.nets[only[cur]].op == "reg":
            cur = only[cur]
            length += 1
        row = out.setdefault(n.layer or "io", {"ff": 0.0, "srl_bits": 0.0})
        if length >= 3:
            row["srl_bits"] += n.width * math.ceil(length / 32)
        else:
            row["ff"] += n.width * length
    return out


def estimate_netlist(nl: Netlist, latency: int = 0) -> Estimate:
    """Totals and a per-layer split whose rows add up to the totals."""
    est = Estimate(latency=latency, ii=nl.ii)
    live = live_nets(nl)

    def row(layer: str) -> dict[str, float]:
        return est.per_layer.setdefault(layer, {"lut": 0.0, "ff": 0.0, "dsp": 0.0})

    totals: dict[str, float] = {"ff": 0.0, "srl_bits": 0.0}
    for layer, regs in register_features(nl, live).items():
        r = row(layer)
        r["ff"] += regs["ff"]
        r["lut"] += COEF.get("srl_bits", 1.0) * regs["srl_bits"]
        totals["ff"] += regs["ff"]
        totals["srl_bits"] += regs["srl_bits"]
    for n in nl.nets:
        if not live[n.id]:
            continue
        f = net_features(nl, n)
        r = row(n.layer or "io")
        r["lut"] += sum(COEF.get(k, 0.0) * v for k, v in f.items())
        r["ff"] += f.get("ff", 0.0)
        r["dsp"] += f.get("dsp", 0.0)
        for k, v in f.items():
            totals[k] = totals.get(k, 0.0) + v
    row("io")["ff"] += latency  # the valid-bit pipeline beside the data
    if nl.ii > 1:
        row("io")["ff"] += nl.ii.bit_length()  # the phase counter
    est.lut = sum(r["lut"] for r in est.per_layer.values())
    est.ff = sum(r["ff"] for r in est.per_layer.values())
    est.dsp = totals.get("dsp", 0.0)
    est.carry = totals.get("carry", 0.0)
    est.features = totals
    return est


def estimate_design(design) -> Estimate:
    return estimate_netlist(design.nl, design.latency)
