"""Dense (Gemm / MatMul with constant weights): ``y = x @ W + b`` over the last axis."""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ModelError, ShapeError
from lightspeed.fixed import cast
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
    mac_cost,
    quantize_param,
)
from lightspeed.ops.mac import dense_cast, linear_precision, mac, trained_mac_precision
from lightspeed.ops.matmul import matmul_node
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import (
    ImportState,
    alias,
    dyn,
    f64,
    opt_const,
    set_trained,
    trained,
    unsupported,
)


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    w = node.params["weight"]
    if not ins[0] or ins[0][-1] != w.shape[0]:
        raise ShapeError(f"input shape {ins[0]} does not end in the weight fan-in {w.shape[0]}")
    return [(*ins[0][:-1], w.shape[1])]


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    y = xs[0] @ node.params["weight"]
    if "bias" in node.params:
        y = y + node.params["bias"]
    return [y]


def _qparams(node: Node, prec: Precision) -> QParams:
    q = {"weight": quantize_param(node.params["weight"], prec["weight"], f"{node.name} weights")}
    if "bias" in node.params:
        q["bias"] = quantize_param(node.params["bias"], prec["bias"], f"{node.name} bias")
    return q


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    lead = x.m.shape[:-1]
    flat = x.m.reshape(-1, x.m.shape[-1])
    args = (flat, x.t, q["weight"], prec["weight"], q.get("bias"), prec.get("bias"), prec["accum"])
    res = dense_cast(*args, prec["result"])  # small batches: one fused pass, same bits
    if res is None:
        res = cast(mac(*args), prec["accum"], prec["result"])
    return [Fx(res.reshape(*lead, -1), prec["result"])]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    return linear_precision(
        node.params["weight"],
        node.params.get("bias"),
        ctx.in_types[0],
        ctx.fixed,
        ctx.options,
        ctx.out_ranges[0],
    )


def _cost(node: Node, ctx: CostContext) -> Cost:
    repeats = int(np.prod(ctx.in_shapes[0][:-1])) if len(ctx.in_shapes[0]) > 1 else 1
    return mac_cost(ctx.qparams["weight"], repeats, ctx, ctx.in_types[0])


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    p = node.params
    return trained_mac_precision(node.name, p["weight"], p.get("bias"), ctx.in_types[0], ctx.fixed)


# -- ONNX import: Gemm, MatMul with a constant right operand


def _gemm(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Gemm", name)
    if a.get("transA", 0):
        raise unsupported("Gemm", name, "transA=1")
    if not st.is_const(onode.input[1]):
        raise unsupported("Gemm", name, "non-constant B (weights)")
    w = f64(st.const(onode.input[1]))
    if w.ndim != 2:
        raise ModelError(f"node {name!r} (Gemm): weight must be 2-D, got {w.shape}")
    if a.get("transB", 0):
        w = w.T
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if len(st.shapes[x]) != 1 or st.shapes[x][0] != w.shape[0]:
        raise ShapeError(
            f"node {name!r} (Gemm): input {st.shapes[x]} does not match weight {w.shape}"
        )
    node = Node(name, "dense", [x], [onode.output[0]], params={"weight": alpha * w})
    c = opt_const(st, onode, 2)
    if c is not None:
        c = f64(c)
        if c.ndim == 2 and c.shape[0] != 1:
            raise unsupported("Gemm", name, f"bias C of shape {c.shape} depends on the batch row")
        node.params["bias"] = (
            beta * np.broadcast_to(c.reshape(-1) if c.ndim else c, (w.shape[1],)).copy()
        )
    if alpha == 1.0:
        set_trained(node, "weight", trained(st, onode.input[1]))
    if c is not None and beta == 1.0:
        set_trained(node, "bias", trained(st, onode.input[2]))
    st.emit(node)


def _matmul(onode, st: ImportState, a: dict, name: str) -> None:
    if st.is_const(onode.input[0]):
        _const_left(onode, st, name)
        return
    x = dyn(st, onode.input[0], "MatMul", name)
    if not st.is_const(onode.input[1]):
        # two activations (attention scores, weighted values): the matmul op
        y = dyn(st, onode.input[1], "MatMul", name)
        st.emit(matmul_node(name, x, y, onode.output[0], st.shapes[x][-1] if st.shapes[x] else 1))
        return
    w = f64(st.const(onode.input[1]))
    if w.ndim != 2:
        raise unsupported("MatMul", name, f"weight of rank {w.ndim} (only 2-D constant weights)")
    node = Node(name, "dense", [x], [onode.output[0]], params={"weight": w})
    set_trained(node, "weight", trained(st, onode.input[1]))
    st.emit(node)


def _const_left(onode, st: ImportState, name: str) -> None:
    """``C @ x`` with constant C (M, N): a fixed graph's receiver/sender matrices acting on
    the objects axis (interaction networks). Written as (x^T @ C^T)^T: a dense layer on the
    transposed tensor between two wiring-only transposes."""
    if st.is_const(onode.input[1]):
        raise unsupported("MatMul", name, "two constant operands (fold it before export)")
    c = f64(st.const(onode.input[0]))
    x = dyn(st, onode.input[1], "MatMul", name)
    shape = st.shapes[x]
    if c.ndim != 2 or len(shape) < 2 or shape[-2] != c.shape[1]:
        raise unsupported(
            "MatMul",
            name,
            f"constant left operand of shape {list(c.shape)} on a tensor of shape {list(shape)} "
            "(a 2-D constant acting on the second-to-last axis is supported)",
        )
    perm = [*range(len(shape) - 2), len(shape) - 1, len(shape) - 2]
    xt, yt = f"{name}__xt", f"{name}__yt"
    st.emit(Node(f"{name}_t_in", "transpose", [x], [xt], attrs={"perm": perm}))
    node = Node(name, "dense", [xt], [yt], params={"weight": c.T.copy()})
    set_trained(node, "weight", trained(st, onode.input[0]))
    st.emit(node)
    st.emit(Node(f"{name}_t_out", "transpose", [yt], [onode.output[0]], attrs={"perm": perm}))


def reduce_sum(onode, st: ImportState, a: dict, name: str) -> None:
    """ReduceSum over non-batch axes as dense layers of ones (exact sums; in firmware the
    ones are wires into an adder tree), one axis at a time, the axis moved last and back.
    ReduceMean over axes other than the spatial ones comes here too (weights 1/n)."""
    op = onode.op_type
    x = dyn(st, onode.input[0], op, name)
    rank = len(st.shapes[x]) + 1  # ONNX rank, batch included
    axes_c = opt_const(st, onode, 1)
    axes = [int(v) for v in (axes_c.reshape(-1) if axes_c is not None else a.get("axes", []))]
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            alias(st, onode.output[0], x)
            return
        axes = list(range(rank))
    axes = sorted({ax + rank if ax < 0 else ax for ax in axes})
    if 0 in axes:
        raise unsupported(op, name, "a reduction over the batch axis")
    keep = bool(a.get("keepdims", 1))
    cur = x
    for k, ax in enumerate(sorted(axes, reverse=True)):  # highest first: lower axes keep place
        shape = st.shapes[cur]
        i = ax - 1
        n = shape[i]
        perm = [j for j in range(len(shape)) if j != i] + [i]
        last = cur
        if i != len(shape) - 1:
            last = f"{name}__t{k}"
            st.emit(Node(f"{name}_t{k}", "transpose", [cur], [last], attrs={"perm": perm}))
        summed = f"{name}__s{k}"
        st.emit(
            Node(
                f"{name}_sum{k}",
                "dense",
                [last],
                [summed],
                params={"weight": np.ones((n, 1)) / (n if op == "ReduceMean" else 1)},
            )
        )
        out_shape = [d for j, d in enumerate(shape) if j != i]
        if keep:
            out_shape.insert(i, 1)
        done = k == len(axes) - 1
        nxt = onode.output[0] if done else f"{name}__r{k}"
        st.emit(Node(f"{name}_r{k}", "reshape", [summed], [nxt], attrs={"shape": out_shape}))
        cur = nxt


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    w = b.quant_const(f"{key}_weight", qp["weight"], prec["weight"])
    bias = b.quant_const(f"{key}_bias", qp["bias"], prec["bias"]) if "bias" in qp else None
    if len(shapes[node.inputs[0]]) == 1:
        b.node("Gemm", [ins[0], w] + ([bias] if bias else []), [out], key)
        return
    if bias is None:
        b.node("MatMul", [ins[0], w], [out], key)
        return
    mid = b.fresh(f"{out}_matmul")
    b.node("MatMul", [ins[0], w], [mid], key)
    b.node("Add", [mid, bias], [out], key)  # same name: the importer folds it into this dense


DENSE = Op(
    name="dense",
    trained_precision=_trained,
    onnx_import={"Gemm": _gemm, "MatMul": _matmul, "ReduceSum": reduce_sum},
    onnx_export=_export,
    roles=("weight", "bias", "accum", "result"),
    param_roles=("weight", "bias"),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    quantize_params=_qparams,
    cost=_cost,
    doc="y = x @ weight + bias on the last axis; weight is (fan_in, fan_out)",
)
