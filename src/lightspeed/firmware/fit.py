"""Know before you build: a graph-level resource estimate in well under a second.

The netlist estimate (:mod:`lightspeed.firmware.estimate`) is exact about widths
but needs the lowered design, whose size grows with the model: a 128-512-512-10 MLP
spent a minute writing 57 MB of Verilog before anything said it would not fit. This
module counts, from the integer weights alone, what the lowering will build for
each dense/conv layer (per output: one term per canonical-signed-digit of each
non-zero weight into one adder tree where the accumulation is exact or wrapping
on the accumulator's grid; otherwise each distinct (input, constant) product built
once and truncated, then one adder per product; a DSP tile per distinct product
with more digits than ``lut_max_digits``), times the number of output positions,
and converts adder bits to LUT/FF with coefficients fitted to the netlist estimate
(``tests/firmware/test_fit.py`` holds them to it on the shipped tagger). ``lightspeed firmware`` uses it to refuse designs that cannot fit
the part before writing anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lightspeed.errors import ConfigError
from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.parts import Part

# LUTs per adder bit and FFs per adder bit (pipeline registers), fitted to the netlist
# estimate of the shipped jet tagger at auto precision (exact trees, shared adder graphs)
# and at hls4ml-style ap_fixed<16,6>, <8,3>, <6,2> (truncated products)
LUT_PER_ADDER_BIT = 0.78  # an accumulator that provably never overflows: exact trees
LUT_PER_ADDER_BIT_INEXACT = 0.65  # one that may wrap or saturate: per-step casts
LUT_PER_DSP_BIT = 0.47  # LUT glue around a DSP-mapped product, per accumulator bit
FF_PER_ADDER_BIT = 0.22
LUT_PER_ELEMENT_BIT = 0.25  # element-wise ops (activations, merges, tables): per result bit
# a reuse factor's weight ROMs, input gates (pruned weights) and per-clock products, as
# the netlist estimate costs them (estimate.COEF phase_rom_bits, gate_bits, reuse_dsp_out_bits)
LUT_PER_ROM_BIT = 0.5
LUT_PER_GATE_BIT = 0.0
LUT_PER_REUSE_DSP_BIT = 0.1
REUSE_CHOICES = (2, 4, 8, 16, 32, 64, 128, 256)


def csd_digits(c: int) -> int:
    """Non-zero digits of c in canonical signed-digit form."""
    c = abs(int(c))
    n = 0
    while c:
        if c & 1:
            c -= 2 - (c & 3)
            n += 1
        c >>= 1
    return n


@dataclass
class LayerFit:
    name: str
    op: str
    lut: float = 0.0
    ff: float = 0.0
    dsp: float = 0.0
    positions: int = 1  # output positions sharing the weights (conv pixels, dense rows)


@dataclass
class FitReport:
    part: Part
    layers: list[LayerFit] = field(default_factory=list)

    @property
    def lut(self) -> float:
        return sum(r.lut for r in self.layers)

    @property
    def ff(self) -> float:
        return sum(r.ff for r in self.layers)

    @property
    def dsp(self) -> float:
        return sum(r.dsp for r in self.layers)

    def utilisation(self) -> dict[str, float]:
        p = self.part
        return {"lut": self.lut / p.lut, "ff": self.ff / p.ff, "dsp": self.dsp / p.dsp}

    @property
    def fits(self) -> bool:
        return all(u <= 1.0 for u in self.utilisation().values())


def _mac_layer(name, op, w_cols: np.ndarray, w_t, x_t, acc, positions: int, opts) -> LayerFit:
    """``w_cols``: integer weights (fan-in rows, one column per output) of one position."""
    w = np.asarray(w_cols).astype(np.int64)
    values, inverse = np.unique(w, return_inverse=True)
    inverse = inverse.reshape(w.shape)
    terms = np.zeros(len(values), dtype=np.int64)  # shift-and-add terms per weight value
    is_dsp = np.zeros(len(values), dtype=bool)
    for k, v in enumerate(values.tolist()):
        if v == 0:
            continue
        c = v >> ((v & -v).bit_length() - 1)  # the odd part: trailing zeros are free shifts
        d = csd_digits(c)
        if abs(c) == 1:
            terms[k] = 1
        elif opts.multipliers == "dsp" or (opts.multipliers == "auto" and d > opts.lut_max_digits):
            terms[k], is_dsp[k] = 1, True
        else:
            terms[k] = d
    # exact when the largest possible sum fits the accumulator (auto precision's choice)
    x_max = max(abs(x_t.min_value), abs(x_t.max_value)) if x_t is not None else math.inf
    w_abs = np.abs(w.astype(np.float64)).sum(axis=0) * 2.0**-w_t.frac
    exact = float(w_abs.max(initial=0.0)) * x_max <= acc.max_value
    on_grid = x_t is not None and x_t.frac + w_t.frac <= acc.frac
    if (exact or acc.overflow == "WRAP") and on_grid:
        # every term goes into one adder tree per output (regrouped by the shared graphs)
        adders = float(np.maximum(terms[inverse].sum(axis=0), 1).sum())
        per_bit = LUT_PER_ADDER_BIT if exact else LUT_PER_ADDER_BIT_INEXACT
    else:
        # each distinct (input, constant) product is built once and truncated, then summed
        nonzero = (w != 0).sum(axis=0)
        inside = sum(
            int(np.maximum(terms[np.unique(inverse[i][w[i] != 0])] - 1, 0).sum())
            for i in range(w.shape[0])
        )
        adders = float(np.maximum(nonzero, 1).sum() + inside)
        per_bit = LUT_PER_ADDER_BIT_INEXACT
    bits = adders * acc.width
    dsp_pairs = sum(len(np.unique(inverse[i][is_dsp[inverse[i]]])) for i in range(w.shape[0]))
    return LayerFit(
        name,
        op,
        lut=(per_bit * bits + LUT_PER_DSP_BIT * acc.width * dsp_pairs) * positions,
        ff=FF_PER_ADDER_BIT * bits * positions,
        dsp=float(dsp_pairs * positions),
        positions=positions,
    )


def _reused_layer(name, op, w_cols: np.ndarray, w_t, x_t, acc, res, positions, rf) -> LayerFit:
    """A dense layer time-multiplexed by ``rf`` (:mod:`lightspeed.firmware.verilog.reuse_mac`).

    Per output slot and input: nothing where every group's weight is zero; the constant's
    shift-and-add terms where the groups share one non-zero weight (gated by an AND on
    the input where some groups' weight is zero); otherwise a multiplier (a DSP) fed by a
    weight ROM. One adder per term, hold registers at the layer's inputs and outputs.
    """
    from lightspeed.firmware.reuse import groups

    w = np.asarray(w_cols).astype(np.int64)
    n_in, n_out = w.shape
    n_groups, per = groups(n_out, rf)
    pad = np.zeros((n_in, n_groups * per), dtype=np.int64)
    pad[:, :n_out] = w
    slots = pad.reshape(n_in, n_groups, per)  # [input, group, slot]
    nz = slots != 0
    used = nz.any(axis=1)
    big = np.iinfo(np.int64).max
    hi = np.where(nz, slots, -big).max(axis=1)
    lo = np.where(nz, slots, big).min(axis=1)
    one = used & (hi == lo)
    gated = one & ~nz.all(axis=1)
    mults = used & ~one
    digits = {v: csd_digits(v) for v in np.unique(hi[one]).tolist()}  # trailing zeros are free
    terms = float(sum(digits[int(v)] for v in hi[one])) + float(mults.sum())
    x_bits = x_t.width if x_t is not None else acc.width
    bits = max(terms, per) * acc.width
    n_mult = float(mults.sum())
    lut = (
        LUT_PER_ADDER_BIT * bits
        + LUT_PER_REUSE_DSP_BIT * acc.width * n_mult
        + LUT_PER_ROM_BIT * (w_t.width * n_mult + float(gated.sum())) * math.ceil(rf / 64)
        + LUT_PER_GATE_BIT * x_bits * float(gated.sum())
    )
    ff = FF_PER_ADDER_BIT * bits + n_in * x_bits + n_out * res.width
    return LayerFit(
        name,
        op,
        lut=lut * positions,
        ff=ff * positions,
        dsp=n_mult * positions,
        positions=positions,
    )


def quick_estimate(q, part: Part, opts: FirmwareOptions | None = None) -> FitReport:
    """LUT/FF/DSP per layer from the compiled model's integers (no lowering)."""
    from lightspeed.firmware.reuse import layer_factors

    opts = opts or FirmwareOptions()
    report = FitReport(part)
    shapes = q.graph.shapes
    streamed = _streamed(q) if opts.io == "stream" else {}
    factors = layer_factors(q, opts)
    for node in q.graph.nodes:
        prec = q.precision.get(node.name, {})
        out_shape = tuple(shapes[node.outputs[0]])
        params = q.qparams.get(node.name, {})
        if node.name in streamed:
            report.layers.append(_stream_layer(q, node, streamed[node.name], opts))
            continue
        if node.op in ("dense", "conv") and "weight" in params:
            acc = prec.get("accum") or prec.get("result")
            w = params["weight"]
            if node.op == "dense":
                cols = w  # (fan_in, fan_out)
                positions = math.prod(out_shape[:-1]) if len(out_shape) > 1 else 1
            else:
                cols = w.reshape(w.shape[0], -1).T  # (C_in/group * kernel, C_out)
                positions = math.prod(out_shape[1:]) if len(out_shape) > 1 else 1
            x_t = q.tensor_types.get(node.inputs[0])
            if node.name in factors:
                layer = _reused_layer(
                    node.name,
                    node.op,
                    cols,
                    prec["weight"],
                    x_t,
                    acc,
                    prec.get("result") or acc,
                    positions,
                    factors[node.name],
                )
                report.layers.append(layer)
                continue
            layer = _mac_layer(node.name, node.op, cols, prec["weight"], x_t, acc, positions, opts)
            report.layers.append(layer)
            continue
        res = prec.get("result") or q.tensor_types.get(node.outputs[0])
        if res is None or node.op in ("flatten", "reshape", "transpose"):
            continue  # wiring
        bits = math.prod(out_shape) * res.width
        report.layers.append(
            LayerFit(node.name, node.op, lut=LUT_PER_ELEMENT_BIT * bits, ff=float(bits))
        )
    return report


def _streamed(q) -> dict[str, str]:
    """``--io stream``: node -> "window" / "pixel" (one pixel per clock) or "dense" (flatten +
    dense accumulated per pixel); the tail after them stays parallel."""
    from lightspeed.firmware.verilog.stream import dense_streams, plan

    groups, tail = plan(q)  # refuses what streaming cannot do, naming the layer
    out = {}
    for win, pix in groups:
        if win is not None:
            out[win.name] = "window"
        out.update({n.name: "pixel" for n in pix})
    if dense_streams(q, tail):
        out[tail[1].name] = "dense"
    return out


def _stream_layer(q, node, kind: str, opts: FirmwareOptions) -> LayerFit:
    """One streamed layer: one kernel instance (positions = 1), its line buffers as FFs."""
    shapes = q.graph.shapes
    prec = q.precision.get(node.name, {})
    in_shape = tuple(shapes[node.inputs[0]])
    res = prec.get("result") or q.tensor_types[node.outputs[0]]
    x_t = q.tensor_types.get(node.inputs[0])
    if kind == "dense":  # per (channel, output): a weight ROM over the pixels, a multiplier
        w = q.qparams[node.name]["weight"]
        src = shapes[q.graph.producer(node.inputs[0]).inputs[0]]  # the flattened feature map
        c = int(src[0])
        pixels = int(math.prod(src[1:]))
        wm = np.asarray(w).reshape(c, pixels, -1)
        pairs = float(np.count_nonzero(np.abs(wm).sum(axis=1)))
        acc = prec.get("accum") or res
        per = prec["weight"].width * 2.9 * math.ceil(pixels / 64) + 0.47 * acc.width
        lut = pairs * (per + LUT_PER_ADDER_BIT * acc.width)
        return LayerFit(
            node.name, node.op, lut=lut, ff=FF_PER_ADDER_BIT * pairs * acc.width, dsp=pairs
        )
    c = int(in_shape[0])
    width = in_shape[-1]
    buffer = 0.0
    if kind == "window":
        k = (
            q.qparams[node.name]["weight"].shape[2:]
            if node.op == "conv"
            else node.attrs["kernel_shape"]
        )
        kh, kw = (1, int(k[0])) if len(k) == 1 else (int(k[0]), int(k[1]))
        buffer = float(((kh - 1) * width + kw - 1) * c * (x_t.width if x_t else 16))
    if node.op == "conv" and "weight" in q.qparams.get(node.name, {}):
        w = q.qparams[node.name]["weight"]
        layer = _mac_layer(
            node.name, node.op, w.reshape(w.shape[0], -1).T, prec["weight"], x_t,
            prec.get("accum") or res, 1, opts,
        )  # fmt: skip
        layer.ff += buffer
        return layer
    bits = int(shapes[node.outputs[0]][0]) * res.width  # one pixel
    return LayerFit(node.name, node.op, lut=LUT_PER_ELEMENT_BIT * bits, ff=float(bits) + buffer)


def stream_alternative(q, part: Part, opts: FirmwareOptions) -> FitReport | None:
    """The same model with ``--io stream``, for a refusal to offer (None: not a streamable CNN)."""
    from dataclasses import replace

    from lightspeed.errors import LightspeedError

    if opts.io == "stream" or not any(n.op == "conv" for n in q.graph.nodes):
        return None
    try:
        return quick_estimate(q, part, replace(opts, io="stream"))
    except LightspeedError:
        return None


def suggest_reuse(
    q, part: Part, opts: FirmwareOptions | None = None
) -> tuple[int, FitReport] | None:
    """The smallest global reuse factor whose estimate fits ``part``, or None if none does."""
    from dataclasses import replace

    from lightspeed.firmware.reuse import REUSE_OPS

    if not any(n.op in REUSE_OPS for n in q.graph.nodes) or (opts and opts.io == "stream"):
        return None
    opts = opts or FirmwareOptions()
    for rf in REUSE_CHOICES:
        if rf <= opts.reuse:
            continue
        rep = quick_estimate(q, part, replace(opts, reuse=rf))
        if rep.fits:
            return rf, rep
    return None


def refusal(
    report: FitReport,
    force_flag: str = "--force",
    stream: FitReport | None = None,
    reuse: tuple[int, FitReport] | None = None,
) -> ConfigError:
    """The error for a design that does not fit: the numbers, the biggest layers, the ways out.

    ``stream``: the ``--io stream`` estimate of a CNN; ``reuse``: what :func:`suggest_reuse`
    found (named first among the ways out)."""
    p = report.part
    u = report.utilisation()
    top = sorted(report.layers, key=lambda r: r.lut, reverse=True)[:3]
    layers = ", ".join(f"{r.name} ({r.op}) ~{r.lut:,.0f} LUT" for r in top)
    return ConfigError(
        f"the design does not fit {p.name}: estimated ~{report.lut:,.0f} LUT "
        f"({100 * u['lut']:.0f}% of {p.lut:,}), ~{report.ff:,.0f} FF ({100 * u['ff']:.0f}%), "
        f"~{report.dsp:,.0f} DSP ({100 * u['dsp']:.0f}% of {p.dsp:,}); largest layers: {layers}. "
        + _reuse_hint(reuse)
        + "Ways to fit: a reuse factor on dense layers (--reuse N: a vector every N clocks, "
        "~1/N of their multipliers and adders; docs/firmware.md#reuse-factor), narrower types "
        "(QAT to 4-8 bits, docs/qat.md, or `lightspeed compile --precision search`), "
        "magnitude-pruned weights (zeros cost nothing), --multipliers dsp/lut to rebalance "
        "LUTs and DSPs, or a larger --part. "
        + (
            f"Streaming the convolutions (--io stream, one pixel per clock): ~{stream.lut:,.0f} LUT "
            f"({100 * stream.utilisation()['lut']:.0f}%), ~{stream.dsp:,.0f} DSP "
            f"({100 * stream.utilisation()['dsp']:.0f}%){' - fits' if stream.fits else ''}. "
            if stream is not None
            else ""
        )
        + f"{force_flag} writes it anyway"
    )


def _reuse_hint(reuse: tuple[int, FitReport] | None) -> str:
    if reuse is None:
        return ""
    rf, rep = reuse
    return (
        f"With --reuse {rf} (a new vector every {rf} clocks) it is estimated to fit: "
        f"~{rep.lut:,.0f} LUT, ~{rep.ff:,.0f} FF, ~{rep.dsp:,.0f} DSP. "
    )
