"""MatMul of two activations (attention scores, attention-weighted values, bilinear terms).

``y[..., m, n] = sum_k a[..., m, k] * b[..., k, n]`` per sample, with numpy/ONNX
broadcasting of the leading axes. A product with a *constant* right operand is a
``dense`` layer instead (its weights are parameters).

Fixed point follows the multiply-accumulate contract of :mod:`lightspeed.ops.mac`,
with the products of two tensors in place of products with weights:
``acc = 0; for k: acc = (accum)(acc + (accum)(a*b)); y = (result) acc``. Auto and
trained precision make the accumulator exact (no product is truncated, no partial
sum overflows), so the emulator sums the products at once; a narrower, user-given
accumulator is summed product by product with every cast, as the contract says.
"""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ShapeError
from lightspeed.fixed import as_exact, requantize
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import (
    AutoContext,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    TrainedContext,
    exact_type,
    merge,
    result_type,
)
from lightspeed.ops.onnx_export import Builder


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    a, b = ins
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(
            f"node {node.name!r} (matmul): operands {a} and {b} need at least 2 axes besides "
            "the batch (a vector operand: reshape it to a 1-row/1-column matrix first)"
        )
    if a[-1] != b[-2]:
        raise ShapeError(f"node {node.name!r} (matmul): {a} @ {b}: inner sizes differ")
    try:
        lead = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    except ValueError:
        raise ShapeError(
            f"node {node.name!r} (matmul): leading axes of {a} and {b} do not broadcast"
        ) from None
    return [(*lead, a[-2], b[-1])]


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.matmul(xs[0], xs[1])]


def _exact_bound(ta, tb, k: int) -> tuple[int, int, int]:
    """Integer bounds and scale of an exact sum of k products of a (ta) and b (tb)."""
    corners = [ta.min_int * tb.min_int, ta.min_int * tb.max_int]
    corners += [ta.max_int * tb.min_int, ta.max_int * tb.max_int]
    return k * min(min(corners), 0), k * max(max(corners), 0), ta.frac + tb.frac


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    a, b = xs
    acc_t, res_t = prec["accum"], prec["result"]
    k = a.m.shape[-1]
    lo, hi, frac = _exact_bound(a.t, b.t, k)
    exact = acc_t.frac >= frac and acc_t.min_int <= lo and hi <= acc_t.max_int
    bits = a.t.width + b.t.width + max(k, 1).bit_length()
    if exact:
        carrier = np.int64 if bits < 62 else object
        s = np.matmul(a.m.astype(carrier), b.m.astype(carrier))  # exact integer sums
        acc = requantize(as_exact(s), frac, acc_t)  # a no-op cast onto the accumulator grid
    else:
        # the contract step by step: each product cast to accum, each partial sum too
        am, bm = as_exact(a.m, b.t.width), as_exact(b.m, a.t.width)
        shape = np.broadcast_shapes((*am.shape[:-1], 1), (*bm.shape[:-2], 1, bm.shape[-1]))
        acc = np.zeros(shape, dtype=np.int64)
        for j in range(k):
            p = requantize(am[..., :, j : j + 1] * bm[..., j : j + 1, :], frac, acc_t)
            acc = requantize(as_exact(acc) + p, acc_t.frac, acc_t)
    return [Fx(requantize(as_exact(acc), acc_t.frac, res_t), res_t)]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    k = int(node.attrs["k"])
    lo, hi, frac = _exact_bound(ctx.in_types[0], ctx.in_types[1], k)
    rlo, rhi = ctx.out_ranges[0]
    return merge(
        ctx.fixed,
        {"accum": exact_type(lo, hi, frac), "result": result_type(rlo, rhi, ctx.options)},
    )


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    k = int(node.attrs["k"])
    lo, hi, frac = _exact_bound(ctx.in_types[0], ctx.in_types[1], k)
    acc = exact_type(lo, hi, frac)
    return merge(ctx.fixed, {"accum": acc, "result": ctx.fixed.get("result", acc)})


def _cost(node: Node, ctx: CostContext) -> Cost:
    out = int(np.prod(_shape(node, ctx.in_shapes)[0]))
    n = out * int(ctx.in_shapes[0][-1])
    return Cost(mults=n, adds=n, bops=n * ctx.in_types[0].width * ctx.in_types[1].width)


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    b.node("MatMul", ins, [out], key)


def matmul_node(name: str, a: str, b: str, out: str, k: int) -> Node:
    """The IR node (``k``: the summed axis' size, which typing needs before shapes exist)."""
    return Node(name, "matmul", [a, b], [out], attrs={"k": int(k)})


MATMUL = Op(
    name="matmul",
    trained_precision=_trained,
    onnx_export=_export,
    roles=("accum", "result"),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    cost=_cost,
    doc="product of two activations y = a @ b (batched, broadcast leading axes); "
    "MAC contract with an exact accumulator in auto/trained precision",
)
