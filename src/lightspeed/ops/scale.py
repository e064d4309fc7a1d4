"""Standalone BatchNorm as a per-channel scale and shift: ``y = x*scale + shift``.

Used where BatchNorm cannot be folded into a preceding dense/conv layer.
Semantics are those of a multiply-accumulate with fan-in one
(see :mod:`lightspeed.ops.mac`); the channel axis is the first non-batch
axis (channels-first), or the only one for vectors.
"""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ShapeError
from lightspeed.fixed import overflow, requantize
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import (
    AutoContext,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    is_pow2,
    quantize_param,
)
from lightspeed.ops.mac import linear_precision


def _bcast(v: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel vector shaped to broadcast over (B, C, *spatial)."""
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    c = node.params["scale"].shape[0]
    if ins[0][0] != c:
        raise ShapeError(f"batchnorm has {c} channels but its input shape is {ins[0]}")
    return [ins[0]]


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [x * _bcast(node.params["scale"], x.ndim) + _bcast(node.params["shift"], x.ndim)]


def _qparams(node: Node, prec: Precision) -> QParams:
    return {
        "scale": quantize_param(node.params["scale"], prec["weight"], f"{node.name} scale"),
        "shift": quantize_param(node.params["shift"], prec["bias"], f"{node.name} shift"),
    }


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x, acc_t = xs[0], prec["accum"]
    nd = x.m.ndim
    prod = requantize(x.m * _bcast(q["scale"], nd), x.t.frac + prec["weight"].frac, acc_t)
    shift = requantize(q["shift"], prec["bias"].frac, acc_t)
    acc = overflow(prod + _bcast(shift, nd), acc_t)
    return [Fx(requantize(acc, acc_t.frac, prec["result"]), prec["result"])]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    w = node.params["scale"][None, :]
    return linear_precision(
        w, node.params["shift"], ctx.in_types[0], ctx.fixed, ctx.options, ctx.out_ranges[0]
    )


def _cost(node: Node, ctx: CostContext) -> Cost:
    per_c = int(np.prod(ctx.in_shapes[0][1:])) if len(ctx.in_shapes[0]) > 1 else 1
    mults = int(np.count_nonzero(~is_pow2(ctx.qparams["scale"]))) * per_c
    n = int(np.prod(ctx.in_shapes[0]))
    return Cost(
        params=2 * node.params["scale"].size,
        mults=mults,
        adds=n,
        bops=mults * ctx.prec["weight"].width * ctx.in_types[0].width + n * ctx.prec["accum"].width,
    )


BATCHNORM = Op(
    name="batchnorm",
    roles=("weight", "bias", "accum", "result"),
    param_roles=("weight", "bias"),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    quantize_params=_qparams,
    cost=_cost,
    doc="per-channel x*scale + shift (unfoldable BatchNorm); weight=scale, bias=shift types",
)
