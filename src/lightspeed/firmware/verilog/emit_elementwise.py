"""Emitters for :mod:`lightspeed.ops.elementwise`: merging ops (add, sub, max, min, mul, mean, concat)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.firmware.verilog.arith import cast_to, const_product, product_sig
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.elementwise import concat_axis


@register("add")
def emit_add(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    arrs: list[Any] = list(np.broadcast_arrays(*ins))
    out = np.empty(arrs[0].shape, dtype=object)
    for idx in np.ndindex(*out.shape):
        total = nl.sum([(a[idx], False) for a in arrs])
        out[idx] = cast_to(nl, total, res)
    return [out]


@register("mul")
def emit_mul(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    arrs: list[Any] = list(np.broadcast_arrays(*ins))
    out = np.empty(arrs[0].shape, dtype=object)
    for idx in np.ndindex(*out.shape):
        acc: Any = arrs[0][idx]
        for a in arrs[1:]:
            acc = nl.mul(acc, a[idx])
        out[idx] = cast_to(nl, acc, res)
    return [out]


@register("concat")
def emit_concat(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    parts = []
    for a in ins:
        b = np.empty(a.shape, dtype=object)
        for idx, s in np.ndenumerate(a):
            b[idx] = cast_to(nl, s, res)
        parts.append(b)
    return [np.concatenate(parts, axis=concat_axis(ctx.node, ins[0].ndim))]


@register("sub")
def emit_sub(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    a, b = np.broadcast_arrays(*ins)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*out.shape):
        x0: Any = a[idx]
        x1: Any = b[idx]
        out[idx] = cast_to(nl, nl.add(x0, x1, sub=True), res)
    return [out]


@register("max")
@register("min")
def emit_extreme(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    """Inputs aligned exactly on the finest scale (wiring), compared pairwise, cast to result."""
    nl, res = ctx.nl, ctx.prec["result"]
    frac = max(t.frac for t in ctx.in_types)
    arrs: list[Any] = list(np.broadcast_arrays(*ins))
    out = np.empty(arrs[0].shape, dtype=object)
    for idx in np.ndindex(*out.shape):
        sigs = [nl.cast(a[idx], frac) for a in arrs]
        if ctx.node.op == "max":
            best = nl.max_tree(sigs)
        else:
            best = sigs[0]
            for s in sigs[1:]:  # min(b, s) = (b - s > 0) ? s : b
                best = nl.select_pos(nl.add(best, s, sub=True), s, best)
        out[idx] = cast_to(nl, best, res)
    return [out]


@register("mean")
def emit_mean(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    """Exact sum, exact product with the constant k = 1/N, cast to result."""
    nl, res, k_t = ctx.nl, ctx.prec["result"], ctx.prec["param"]
    k = int(np.asarray(ctx.qparams["k"]).reshape(()))
    arrs: list[Any] = list(np.broadcast_arrays(*ins))
    out = np.empty(arrs[0].shape, dtype=object)
    for idx in np.ndindex(*out.shape):
        if k == 0:
            out[idx] = nl.const(0, res.frac)
            continue
        total = nl.sum([(a[idx], False) for a in arrs])
        prod = product_sig(nl, const_product(nl, total, k, k_t.frac, ctx.opts))
        out[idx] = cast_to(nl, prod, res)
    return [out]
