"""Linear (bilinear, trilinear) upsampling by integer factors: ``resize_linear``.

Attrs ``scales`` (one integer >= 1 per non-batch axis) and ``ctm``, the ONNX
``coordinate_transformation_mode`` the exporters write: ``half_pixel`` (torch
``align_corners=False``, Keras/TF ``UpSampling2D(interpolation="bilinear")``),
``pytorch_half_pixel`` (the same for an output longer than 1), ``align_corners``
and ``asymmetric``. Along a resized axis output ``i`` reads the source
coordinate ``c`` of that mode, clamped to ``[0, n - 1]``, and mixes input
``floor(c)`` with weight ``1 - frac(c)`` and the next one with ``frac(c)``
(ONNX ``Resize`` mode ``linear``).

Fixed-point contract: each axis's weights are put on the ``weight`` type's
grid (``ufixed`` with ``f`` fractional bits; exact when the weights are
dyadic, e.g. quarters for factor 2, otherwise rounded to nearest); the output
is the exact sum of input x product-of-axis-weights (fraction ``in.frac +
d*f`` for ``d`` resized axes, never overflows), cast to ``accum`` (auto: that
exact type, so no cast; a pinned type: one cast with its modes), then to
``result``. Trained precision keeps the sum exact (result = accum) and
refuses weights that are not exact in 16 fractional bits (``align_corners``
with most sizes).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

from lightspeed.errors import ModelError, ShapeError, UnsupportedOpError
from lightspeed.fixed import FixedType, requantize
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import AutoContext, Fx, Op, Precision, QParams, exact_type, result_type
from lightspeed.ops.onnx_export import Builder

CTMS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
MAX_FRAC = 16  # weight fraction bits at most (trained: weights must be exact within it)


def source_coord(i: int, s: int, n_in: int, ctm: str) -> Fraction:
    """ONNX Resize's source coordinate of output ``i`` at integer scale ``s``."""
    n_out = n_in * s
    if ctm == "half_pixel" or (ctm == "pytorch_half_pixel" and n_out > 1):
        return Fraction(2 * i + 1, 2 * s) - Fraction(1, 2)
    if ctm == "pytorch_half_pixel":
        return Fraction(0)
    if ctm == "asymmetric":
        return Fraction(i, s)
    if ctm == "align_corners":
        return Fraction(i * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
    raise ShapeError(f"coordinate_transformation_mode {ctm!r} (one of {', '.join(CTMS)})")


def axis_weights(n_in: int, s: int, ctm: str) -> np.ndarray:
    """(n_out, n_in) exact weights of one axis (Fractions, object array)."""
    w = np.full((n_in * s, n_in), Fraction(0), dtype=object)
    for i in range(n_in * s):
        c = min(max(source_coord(i, s, n_in, ctm), Fraction(0)), Fraction(n_in - 1))
        lo = math.floor(c)
        t = c - lo
        w[i, lo] += 1 - t
        if t:
            w[i, lo + 1] += t
    return w


def _scales(node: Node, shape: Shape) -> list[int]:
    scales = [int(v) for v in node.attrs["scales"]]
    if len(scales) != len(shape) or min(scales) < 1:
        raise ShapeError(f"resize scales {scales} must be {len(shape)} integers >= 1")
    return scales


def _resized(node: Node, shape: Shape) -> list[int]:
    return [a for a, s in enumerate(_scales(node, shape)) if s > 1]


def weight_frac(node: Node, shape: Shape, limit: int = MAX_FRAC) -> tuple[int, bool]:
    """Fraction bits of the axis weights: the fewest that are exact, or ``limit`` (rounded)."""
    ctm = str(node.attrs.get("ctm", "half_pixel"))
    scales = _scales(node, shape)
    ws = [axis_weights(shape[a], scales[a], ctm) for a in _resized(node, shape)]
    dens = {int(v.denominator) for w in ws for v in w.flat}
    den = math.lcm(*dens) if dens else 1
    if den & (den - 1) == 0 and den.bit_length() - 1 <= limit:
        return den.bit_length() - 1, True
    return limit, False


def int_axis_weights(node: Node, shape: Shape, frac: int) -> list[tuple[int, np.ndarray]]:
    """(axis, integer weight matrix at ``frac``: nearest, ties up) of every resized axis."""
    ctm = str(node.attrs.get("ctm", "half_pixel"))
    scales = _scales(node, shape)
    out = []
    for a in _resized(node, shape):
        w = axis_weights(shape[a], scales[a], ctm)
        q = np.vectorize(lambda v: math.floor(v * 2**frac + Fraction(1, 2)), otypes=[object])(w)
        out.append((a, q.astype(np.int64)))
    return out


def taps(node: Node, shape: Shape, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output element (flat), the flat input indices and integer weights (frac d*frac).

    Shapes (n_out, K) with K = 2**d; an unused tap has weight 0.
    """
    mats = dict(int_axis_weights(node, shape, frac))
    pairs = {a: [np.nonzero(w[i])[0].tolist() for i in range(w.shape[0])] for a, w in mats.items()}
    out_shape = tuple(n * s for n, s in zip(shape, _scales(node, shape), strict=True))
    k = 2 ** len(mats)
    ind = np.zeros((int(np.prod(out_shape)), k), np.int64)
    wts = np.zeros_like(ind)
    for o, pos in enumerate(np.ndindex(*out_shape)):
        choices = [pairs[a][p] if a in mats else [p] for a, p in enumerate(pos)]
        for j, src in enumerate(itertools.product(*choices)):
            ind[o, j] = np.ravel_multi_index(src, shape)
            wts[o, j] = math.prod(int(mats[a][pos[a], src[a]]) for a in mats)
    return ind, wts


# -- semantics


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    scales = _scales(node, ins[0])
    ctm = str(node.attrs.get("ctm", "half_pixel"))
    if ctm not in CTMS:
        raise ShapeError(f"coordinate_transformation_mode {ctm!r} (one of {', '.join(CTMS)})")
    node.attrs["in_shape"] = [int(n) for n in ins[0]]  # for typing, which sees no shapes
    return [tuple(n * s for n, s in zip(ins[0], scales, strict=True))]


def _apply(x: np.ndarray, mats: list[tuple[int, np.ndarray]]) -> np.ndarray:
    for a, w in mats:
        x = np.moveaxis(np.tensordot(w, np.moveaxis(x, a + 1, 0), axes=(1, 0)), 0, a + 1)
    return x


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = np.asarray(xs[0], dtype=np.float64)
    ctm = str(node.attrs.get("ctm", "half_pixel"))
    scales = _scales(node, x.shape[1:])
    mats = [(a, axis_weights(x.shape[a + 1], scales[a], ctm).astype(np.float64))
            for a in _resized(node, x.shape[1:])]  # fmt: skip
    return [_apply(x, mats)]


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    shape = x.m.shape[1:]
    f = prec["weight"].frac
    mats = int_axis_weights(node, shape, f)
    bits = x.t.width + len(mats) * (f + 2)
    m = x.m.astype(object if bits > 62 else np.int64)
    acc = _apply(m, [(a, w.astype(m.dtype)) for a, w in mats])
    acc_frac = x.t.frac + len(mats) * f
    acc_t = prec["accum"]
    if acc_t != exact_accum(node, x.t, shape, f):  # a pinned accumulator: one cast to it
        acc, acc_frac = requantize(acc, acc_frac, acc_t), acc_t.frac
    return [Fx(requantize(acc, acc_frac, prec["result"]), prec["result"])]


def exact_accum(node: Node, t_in: FixedType, shape: Shape, f: int) -> FixedType:
    """The type that holds every weighted sum exactly (weights at ``f`` fractional bits)."""
    mats = int_axis_weights(node, shape, f)
    total = math.prod(int(w.sum(axis=1).max()) for _, w in mats)  # largest weight sum (>= 0)
    lo, hi = t_in.min_int * total, t_in.max_int * total
    return exact_type(min(lo, 0), max(hi, 0), t_in.frac + len(mats) * f)


def _accum(node: Node, t_in: FixedType, shape: Shape, f: int) -> tuple[FixedType, FixedType]:
    w_t = FixedType(f + 1, 1, False, "RND", "SAT")
    return w_t, exact_accum(node, t_in, shape, f)


def _in_shape(node: Node) -> Shape:
    return tuple(int(v) for v in node.attrs["in_shape"])


def _auto(node: Node, ctx: AutoContext) -> Precision:
    shape = _in_shape(node)
    f, _ = weight_frac(node, shape, min(MAX_FRAC, max(ctx.options.weight_bits - 1, 1)))
    if "weight" in ctx.fixed:
        f = ctx.fixed["weight"].frac
    w_t, acc = _accum(node, ctx.in_types[0], shape, f)
    prec = {"weight": ctx.fixed.get("weight", w_t), "accum": ctx.fixed.get("accum", acc)}
    lo, hi = ctx.out_ranges[0]
    prec["result"] = ctx.fixed.get("result") or result_type(lo, hi, ctx.options)
    return prec


def _trained(node: Node, ctx) -> Precision:
    shape = _in_shape(node)
    f, exact = weight_frac(node, shape)
    if not exact:
        raise UnsupportedOpError(
            f"node {node.name!r} (linear resize): its weights are not exact in {MAX_FRAC} "
            "fractional bits (align_corners with these sizes), so training fixes no type; "
            "use precision='auto' with calibration data, or give the layer's types in the config"
        )
    w_t, acc = _accum(node, ctx.in_types[0], shape, f)
    return {"weight": w_t, "accum": acc, "result": acc}


# -- ONNX


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes):
    scales = b.const(f"{key}_scales", np.array([1.0, *node.attrs["scales"]]), dtype=np.float32)
    b.node("Resize", [ins[0], "", scales], [out], key, mode="linear",
           coordinate_transformation_mode=str(node.attrs.get("ctm", "half_pixel")))  # fmt: skip


def linear_node(name: str, x: str, out: str, scales: list[int], ctm: str) -> Node:
    """The IR node of a linear upsampling (ONNX/torch/Keras import), or an error naming the form."""
    if ctm not in CTMS:
        raise ModelError(
            f"node {name!r} (Resize linear): coordinate_transformation_mode {ctm!r} is not "
            f"supported (supported: {', '.join(CTMS)}); export with align_corners or half_pixel"
        )
    attrs = {"scales": list(scales), "ctm": ctm}
    return Node(name, "resize_linear", [x], [out], attrs=attrs)


RESIZE_LINEAR = Op(
    name="resize_linear",
    roles=("weight", "accum", "result"),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    trained_precision=_trained,
    onnx_export=_export,
    doc="linear (bilinear) upsampling by integer scales (attr ctm: half_pixel, "
    "pytorch_half_pixel, align_corners, asymmetric): exact weighted sum, then a cast; "
    "ONNX Resize mode linear, torch Upsample bilinear, Keras UpSampling bilinear",
)

__all__ = [
    "CTMS",
    "RESIZE_LINEAR",
    "axis_weights",
    "exact_accum",
    "linear_node",
    "taps",
    "weight_frac",
]
