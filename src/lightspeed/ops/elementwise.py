"""Merging ops: Add, Mul (element-wise, NumPy broadcasting), Concat.

Add and Concat align their inputs exactly on the finest scale, then cast to
``result``; Mul forms the exact product, then casts.
"""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ShapeError
from lightspeed.fixed import FixedType, as_exact, requantize
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import (
    AutoContext,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    exact_type,
    merge,
    result_type,
)


def _broadcast(node: Node, ins: list[Shape]) -> list[Shape]:
    try:
        return [tuple(np.broadcast_shapes(*ins))]
    except ValueError as exc:
        raise ShapeError(f"inputs {ins} do not broadcast together") from exc


def _aligned(xs: list[Fx]) -> tuple[list[np.ndarray], int]:
    frac = max(x.t.frac for x in xs)
    return [as_exact(x.m, frac - x.t.frac + 1) << (frac - x.t.frac) for x in xs], frac


def _add_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [sum(xs[1:], xs[0])]


def _add_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    ms, frac = _aligned(xs)
    total = ms[0]
    for m in ms[1:]:
        total = total + m
    return [Fx(requantize(total, frac, prec["result"]), prec["result"])]


def _add_auto(node: Node, ctx: AutoContext) -> Precision:
    frac = max(t.frac for t in ctx.in_types)
    lo = sum(t.min_int << (frac - t.frac) for t in ctx.in_types)
    hi = sum(t.max_int << (frac - t.frac) for t in ctx.in_types)
    return merge(ctx.fixed, {"result": exact_type(lo, hi, frac)})


def _n_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.out_shapes[0]))
    return Cost(adds=n * (len(ctx.in_shapes) - 1), bops=n * ctx.prec["result"].width)


ADD = Op(
    name="add",
    roles=("result",),
    infer_shape=_broadcast,
    run_float=_add_float,
    run_fixed=_add_fixed,
    auto_precision=_add_auto,
    cost=_n_cost,
    doc="element-wise sum (exact), cast to result",
)


def _mul_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return [out]


def _mul_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    bits = sum(x.t.width for x in xs)
    m = as_exact(xs[0].m, bits)
    for x in xs[1:]:
        m = m * as_exact(x.m, bits)
    frac = sum(x.t.frac for x in xs)
    return [Fx(requantize(m, frac, prec["result"]), prec["result"])]


def _mul_auto(node: Node, ctx: AutoContext) -> Precision:
    lo, hi = ctx.out_ranges[0]
    return merge(ctx.fixed, {"result": result_type(lo, hi, ctx.options)})


def _mul_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.out_shapes[0])) * (len(ctx.in_shapes) - 1)
    return Cost(mults=n, bops=n * ctx.in_types[0].width * ctx.in_types[-1].width)


MUL = Op(
    name="mul",
    roles=("result",),
    infer_shape=_broadcast,
    run_float=_mul_float,
    run_fixed=_mul_fixed,
    auto_precision=_mul_auto,
    cost=_mul_cost,
    doc="element-wise product (exact), cast to result",
)


def _axis(node: Node, ndim: int) -> int:
    """Concat axis in IR terms (no batch); the attr holds the ONNX axis (batch = 0)."""
    a = int(node.attrs.get("axis", 1))
    a = a + ndim + 1 if a < 0 else a
    if a == 0:
        raise ShapeError("concatenation over the batch axis is not supported")
    return a - 1


def _concat_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    ax = _axis(node, len(ins[0]))
    base = list(ins[0])
    for s in ins[1:]:
        if len(s) != len(base) or any(
            a != b for i, (a, b) in enumerate(zip(s, base, strict=False)) if i != ax
        ):
            raise ShapeError(f"inputs {ins} differ outside the concat axis")
        base[ax] += s[ax]
    return [tuple(base)]


def _concat_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(xs, axis=_axis(node, xs[0].ndim - 1) + 1)]


def _concat_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    parts = [requantize(x.m, x.t.frac, prec["result"]) for x in xs]
    return [Fx(np.concatenate(parts, axis=_axis(node, xs[0].m.ndim - 1) + 1), prec["result"])]


def _concat_auto(node: Node, ctx: AutoContext) -> Precision:
    frac = max(t.frac for t in ctx.in_types)
    lo = min(t.min_int << (frac - t.frac) for t in ctx.in_types)
    hi = max(t.max_int << (frac - t.frac) for t in ctx.in_types)
    return merge(ctx.fixed, {"result": exact_type(lo, hi, frac)})


CONCAT = Op(
    name="concat",
    roles=("result",),
    infer_shape=_concat_shape,
    run_float=_concat_float,
    run_fixed=_concat_fixed,
    auto_precision=_concat_auto,
    doc="concatenation (axis as in ONNX, batch = 0); inputs cast to result",
)

__all__ = ["ADD", "CONCAT", "MUL", "FixedType"]
