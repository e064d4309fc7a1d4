"""Dense (Gemm / MatMul with constant weights): ``y = x @ W + b`` over the last axis."""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ShapeError
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
    mac_cost,
    quantize_param,
)
from lightspeed.ops.mac import dense_cast, linear_precision, mac


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


DENSE = Op(
    name="dense",
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
