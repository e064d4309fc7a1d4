"""Merging ops: Add, Sub, Max, Min, Mul, Mean (element-wise, NumPy broadcasting), Concat.

Add, Sub, Max, Min and Concat align their inputs exactly on the finest scale,
combine them exactly (sum, difference, element-wise max/min), then cast to
``result``; Mul forms the exact product, then casts. Mean (ONNX ``Mean``,
Keras ``Average``) of N inputs forms the exact sum, multiplies it exactly by
``k = 1/N`` quantized to the ``param`` type (exact when N is a power of two),
then casts: ``(result)(sum * k)``.
"""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ModelError, ShapeError
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
    TrainedContext,
    exact_capped,
    exact_type,
    merge,
    param_type,
    quantize_param,
    result_type,
)
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import (
    ImportState,
    affine,
    dyn,
    full_const,
    trained,
    unsupported,
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


def _add_auto(node: Node, ctx: AutoContext | TrainedContext) -> Precision:
    frac = max(t.frac for t in ctx.in_types)
    lo = sum(t.min_int << (frac - t.frac) for t in ctx.in_types)
    hi = sum(t.max_int << (frac - t.frac) for t in ctx.in_types)
    return merge(ctx.fixed, {"result": exact_type(lo, hi, frac)})


# -- ONNX import: element-wise arithmetic. Two computed operands map to an IR op;
# a constant operand is a scale/shift (affine), folded later by ir.passes.fold_affine.
_TWO_TENSORS = {"Add": "add", "Sub": "sub", "Mul": "mul"}


def _binary(onode, st: ImportState, a: dict, name: str) -> None:
    op = onode.op_type
    out = onode.output[0]
    t0, t1 = onode.input[0], onode.input[-1]
    c0, c1 = st.is_const(t0), st.is_const(t1)
    if op == "Sum":
        if any(st.is_const(t) for t in onode.input):
            raise unsupported("Sum", name, "constant operand; use Add")
        xs = [dyn(st, t, op, name) for t in onode.input]
        st.emit(Node(name, "add", xs, [out]))
        return
    if not c0 and not c1:
        if op not in _TWO_TENSORS:
            raise unsupported(op, name, "two non-constant operands")
        xs = [dyn(st, t, op, name) for t in (t0, t1)]
        st.emit(Node(name, _TWO_TENSORS[op], xs, [out]))
        return
    if op not in ("Add", "Sub", "Mul", "Div"):
        raise unsupported(op, name, "a constant operand")
    x = dyn(st, t1 if c0 else t0, op, name)
    c = full_const(st.const(t0 if c0 else t1), st.shapes[x], op, name)
    ones, zeros = np.ones_like(c), np.zeros_like(c)
    # a trained (QONNX Quant) operand keeps its type through folding: a bias after MatMul
    c_type = trained(st, t0 if c0 else t1)
    types: dict[str, FixedType] = {}
    if op == "Add":
        scale, shift = ones, c
        types = {"shift": c_type} if c_type else {}
    elif op == "Mul":
        scale, shift = c, zeros
        types = {"scale": c_type} if c_type else {}
    elif op == "Sub":
        scale, shift = (-ones, c) if c0 else (ones, -c)
    else:  # Div
        if c0:
            raise unsupported("Div", name, "division by a non-constant tensor")
        scale, shift = 1.0 / c, zeros
    affine(st, x, out, scale, shift, name, op, types)


def _add_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    b.node("Add" if len(ins) == 2 else "Sum", ins, [out], key)


def _n_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.out_shapes[0]))
    return Cost(adds=n * (len(ctx.in_shapes) - 1), bops=n * ctx.prec["result"].width)


ADD = Op(
    name="add",
    trained_precision=_add_auto,
    onnx_import={"Add": _binary, "Sub": _binary, "Mul": _binary, "Div": _binary, "Sum": _binary},
    onnx_export=_add_export,
    roles=("result",),
    infer_shape=_broadcast,
    run_float=_add_float,
    run_fixed=_add_fixed,
    auto_precision=_add_auto,
    cost=_n_cost,
    doc="element-wise sum (exact), cast to result",
)


def _sub_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0] - xs[1]]


def _sub_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    (a, b), frac = _aligned(xs)
    return [Fx(requantize(a - b, frac, prec["result"]), prec["result"])]


def _sub_auto(node: Node, ctx: AutoContext | TrainedContext) -> Precision:
    """The exact type of the difference: [a.min - b.max, a.max - b.min] on the finest scale."""
    ta, tb = ctx.in_types
    frac = max(ta.frac, tb.frac)
    sa, sb = frac - ta.frac, frac - tb.frac
    lo = (ta.min_int << sa) - (tb.max_int << sb)
    hi = (ta.max_int << sa) - (tb.min_int << sb)
    return merge(ctx.fixed, {"result": exact_type(lo, hi, frac)})


def _sub_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    b.node("Sub", ins, [out], key)


def _sub_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    if len(ins) != 2:
        raise ShapeError(f"sub takes two inputs, not {len(ins)}")
    return _broadcast(node, ins)


SUB = Op(
    name="sub",
    trained_precision=_sub_auto,
    onnx_export=_sub_export,
    roles=("result",),
    infer_shape=_sub_shape,
    run_float=_sub_float,
    run_fixed=_sub_fixed,
    auto_precision=_sub_auto,
    cost=_n_cost,
    doc="element-wise difference x0 - x1 (exact), cast to result",
)


# -- max / min: n-ary, broadcasting; inputs aligned exactly, compared, cast to result

_REDUCE = {"max": np.maximum, "min": np.minimum}


def _extreme_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    f = _REDUCE[node.op]
    out = xs[0]
    for x in xs[1:]:
        out = f(out, x)
    return [out]


def _extreme_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    f = _REDUCE[node.op]
    ms, frac = _aligned(xs)
    out = ms[0]
    for m in ms[1:]:
        out = f(out, m)
    return [Fx(requantize(out, frac, prec["result"]), prec["result"])]


def _extreme_import(onode, st: ImportState, a: dict, name: str) -> None:
    """ONNX Max/Min: computed operands -> max/min; one constant scalar -> clip."""
    op = onode.op_type
    out = onode.output[0]
    consts = [t for t in onode.input if st.is_const(t)]
    xs = [dyn(st, t, op, name) for t in onode.input if not st.is_const(t)]
    if not xs:
        raise unsupported(op, name, "no computed operand")
    if len(consts) > 1:
        raise unsupported(op, name, f"{len(consts)} constant operands (at most one scalar)")
    ir_op = op.lower()
    if not consts:
        st.emit(Node(name, ir_op, xs, [out]))
        return
    c = np.asarray(st.const(consts[0]), dtype=np.float64)
    if c.size != 1:
        raise unsupported(op, name, f"constant operand of shape {c.shape} (only a scalar)")
    if c.ndim > len(st.shapes[xs[0]]) + 1:
        raise unsupported(op, name, f"constant of shape {c.shape} would grow the tensor")
    bound = float(c.reshape(-1)[0])
    src = xs[0]
    if len(xs) > 1:  # the n-ary max/min of the computed operands, then the clip
        src = f"{out}__{ir_op}"
        st.uses[src] = 1
        st.emit(Node(f"{name}_{ir_op}", ir_op, xs, [src]))
    attrs = {"min": bound, "max": None} if op == "Max" else {"min": None, "max": bound}
    st.emit(Node(name, "clip", [src], [out], attrs=attrs))


def _extreme_export(onnx_op: str):
    def emit(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
        b.node(onnx_op, ins, [out], key)

    return emit


def _extreme(name: str) -> Op:
    return Op(
        name=name,
        trained_precision=_concat_auto,
        onnx_import={name.capitalize(): _extreme_import},
        onnx_export=_extreme_export(name.capitalize()),
        roles=("result",),
        infer_shape=_broadcast,
        run_float=_extreme_float,
        run_fixed=_extreme_fixed,
        auto_precision=_concat_auto,
        cost=_n_cost,
        doc=f"element-wise {name} of the inputs (aligned exactly), cast to result",
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


def _mul_trained(node: Node, ctx: TrainedContext) -> Precision:
    """The exact product type: bounds of the product of the input ranges."""
    frac = sum(t.frac for t in ctx.in_types)
    lo, hi = 1, 1
    for t in ctx.in_types:
        corners = [lo * t.min_int, lo * t.max_int, hi * t.min_int, hi * t.max_int]
        lo, hi = min(corners), max(corners)
    return merge(ctx.fixed, {"result": exact_type(lo, hi, frac)})


def _mul_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    if len(ins) != 2:
        raise ModelError(
            f"node {node.name!r}: a {len(ins)}-input mul has no single ONNX op; QONNX export "
            "supports two-input mul only"
        )
    b.node("Mul", ins, [out], key)


MUL = Op(
    name="mul",
    trained_precision=_mul_trained,
    onnx_export=_mul_export,
    roles=("result",),
    infer_shape=_broadcast,
    run_float=_mul_float,
    run_fixed=_mul_fixed,
    auto_precision=_mul_auto,
    cost=_mul_cost,
    doc="element-wise product (exact), cast to result",
)


def concat_axis(node: Node, ndim: int) -> int:
    """Concat axis in IR terms (no batch); the attr holds the ONNX axis (batch = 0)."""
    a = int(node.attrs.get("axis", 1))
    a = a + ndim + 1 if a < 0 else a
    if a == 0:
        raise ShapeError("concatenation over the batch axis is not supported")
    return a - 1


def _concat_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    ax = concat_axis(node, len(ins[0]))
    base = list(ins[0])
    for s in ins[1:]:
        if len(s) != len(base) or any(
            a != b for i, (a, b) in enumerate(zip(s, base, strict=False)) if i != ax
        ):
            raise ShapeError(f"inputs {ins} differ outside the concat axis")
        base[ax] += s[ax]
    return [tuple(base)]


def _concat_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(xs, axis=concat_axis(node, xs[0].ndim - 1) + 1)]


def _concat_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    parts = [requantize(x.m, x.t.frac, prec["result"]) for x in xs]
    return [Fx(np.concatenate(parts, axis=concat_axis(node, xs[0].m.ndim - 1) + 1), prec["result"])]


def _concat_auto(node: Node, ctx: AutoContext | TrainedContext) -> Precision:
    frac = max(t.frac for t in ctx.in_types)
    lo = min(t.min_int << (frac - t.frac) for t in ctx.in_types)
    hi = max(t.max_int << (frac - t.frac) for t in ctx.in_types)
    return merge(ctx.fixed, {"result": exact_type(lo, hi, frac)})


def _concat_import(onode, st: ImportState, a: dict, name: str) -> None:
    for t in onode.input:
        if st.is_const(t):
            raise unsupported("Concat", name, f"constant input {t!r}")
    xs = [dyn(st, t, "Concat", name) for t in onode.input]
    rank = len(st.shapes[xs[0]]) + 1
    axis = int(a["axis"])
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise unsupported("Concat", name, "concatenation over the batch axis")
    st.emit(Node(name, "concat", xs, [onode.output[0]], attrs={"axis": axis}))


def _concat_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    b.node("Concat", ins, [out], key, axis=int(node.attrs.get("axis", 1)))


CONCAT = Op(
    name="concat",
    trained_precision=_concat_auto,
    onnx_import={"Concat": _concat_import},
    onnx_export=_concat_export,
    roles=("result",),
    infer_shape=_concat_shape,
    run_float=_concat_float,
    run_fixed=_concat_fixed,
    auto_precision=_concat_auto,
    doc="concatenation (axis as in ONNX, batch = 0); inputs cast to result",
)

MAX = _extreme("max")
MIN = _extreme("min")


# -- mean: exact sum times the quantized 1/N


def _mean_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [sum(xs[1:], xs[0]) / len(xs)]


def _mean_qparams(node: Node, prec: Precision) -> QParams:
    n = int(node.attrs["n"])
    return {"k": quantize_param(np.array(1.0 / n), prec["param"], f"{node.name} 1/{n}")}


def _mean_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    k_t = prec["param"]
    extra = k_t.width + len(xs).bit_length() + 1
    ms, frac = _aligned([Fx(as_exact(x.m, extra), x.t) for x in xs])
    total = ms[0]
    for m in ms[1:]:
        total = total + m
    return [Fx(requantize(total * int(q["k"]), frac + k_t.frac, prec["result"]), prec["result"])]


def mean_k_type(n: int, bits: int) -> FixedType:
    """The type of 1/n: exact for a power of two, else ``bits`` wide (unsigned, RND)."""
    return param_type(np.array([1.0 / n]), bits, signed=False)


def _mean_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    node.attrs["n"] = len(ins)
    return _broadcast(node, ins)


def _mean_auto(node: Node, ctx: AutoContext) -> Precision:
    lo, hi = ctx.out_ranges[0]
    auto = {
        "param": mean_k_type(len(ctx.in_types), ctx.options.weight_bits),
        "result": result_type(lo, hi, ctx.options),
    }
    return merge(ctx.fixed, auto)


def _mean_trained(node: Node, ctx: TrainedContext) -> Precision:
    """1/N at 16 bits (exact for powers of two) and the exact type of sum * k."""
    k_t = ctx.fixed.get("param") or mean_k_type(len(ctx.in_types), 16)
    k = int(quantize_param(np.array(1.0 / len(ctx.in_types)), k_t, f"{node.name} 1/N"))
    s = _add_auto(node, TrainedContext(ctx.in_types, {}))["result"]
    res = exact_capped(s.min_int * k, s.max_int * k, s.frac + k_t.frac)
    return merge(ctx.fixed, {"param": k_t, "result": res})


def _mean_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.out_shapes[0]))
    w = ctx.prec["result"].width
    return Cost(
        params=1,
        adds=n * (len(ctx.in_shapes) - 1),
        mults=n,
        bops=n * (w + ctx.prec["param"].width * w),
    )


def _mean_import(onode, st: ImportState, a: dict, name: str) -> None:
    if any(st.is_const(t) for t in onode.input):
        raise unsupported("Mean", name, "constant operand; use Add and Mul by a constant")
    xs = [dyn(st, t, "Mean", name) for t in onode.input]
    st.emit(Node(name, "mean", xs, [onode.output[0]]))


def _mean_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    b.node("Mean", ins, [out], key)


MEAN = Op(
    name="mean",
    trained_precision=_mean_trained,
    trained_default=True,
    onnx_import={"Mean": _mean_import},
    onnx_export=_mean_export,
    roles=("param", "result"),
    param_roles=("param",),
    param_role={"k": "param"},
    infer_shape=_mean_shape,
    run_float=_mean_float,
    run_fixed=_mean_fixed,
    auto_precision=_mean_auto,
    quantize_params=_mean_qparams,
    cost=_mean_cost,
    doc="element-wise mean of N inputs: (result)(exact sum * k), k = 1/N as 'param' (Keras Average)",
)

__all__ = ["ADD", "CONCAT", "MAX", "MEAN", "MIN", "MUL", "SUB", "FixedType", "concat_axis"]
