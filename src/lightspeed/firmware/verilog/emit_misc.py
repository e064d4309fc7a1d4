"""Emitters for merging ops (add, mul, concat), pooling and pure wiring (flatten, reshape, transpose)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.firmware.netlist import Sig
from lightspeed.firmware.verilog.arith import const_product, product_sig
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.elementwise import _axis
from lightspeed.ops.pooling import pool_attrs, recip, windows


def _cast_to(nl, s: Sig, t) -> Sig:
    return nl.cast(s, t.frac, t.rounding, t)


@register("add")
def emit_add(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    arrs: list[Any] = list(np.broadcast_arrays(*ins))
    out = np.empty(arrs[0].shape, dtype=object)
    for idx in np.ndindex(*out.shape):
        total = nl.sum([(a[idx], False) for a in arrs])
        out[idx] = _cast_to(nl, total, res)
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
        out[idx] = _cast_to(nl, acc, res)
    return [out]


@register("concat")
def emit_concat(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    parts = []
    for a in ins:
        b = np.empty(a.shape, dtype=object)
        for idx, s in np.ndenumerate(a):
            b[idx] = _cast_to(nl, s, res)
        parts.append(b)
    return [np.concatenate(parts, axis=_axis(ctx.node, ins[0].ndim))]


@register("maxpool")
def emit_maxpool(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    win = windows(ins[0][None], ctx.node, None)[0]  # (C, *O, K); padding = None (-inf)
    out = np.empty(win.shape[:-1], dtype=object)
    for idx in np.ndindex(*out.shape):
        cands = [s for s in win[idx] if s is not None]
        if not cands:
            raise NotImplementedError(
                f"node {ctx.node.name!r}: a max-pool window lies entirely in the padding"
            )
        out[idx] = _cast_to(nl, nl.max_tree(cands), res)
    return [out]


@register("avgpool")
@register("global_avgpool")
def emit_avgpool(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res = ctx.nl, ctx.prec["result"]
    x = ins[0]
    k = int(np.prod(pool_attrs(ctx.node, x.shape)[0]))
    r, rfrac = recip(k)
    win = windows(x[None], ctx.node, None)[0]  # padded zeros count in K (count_include_pad)
    out = np.empty(win.shape[:-1], dtype=object)
    for idx in np.ndindex(*out.shape):
        terms = [(s, False) for s in win[idx] if s is not None]
        total = nl.sum(terms) if terms else nl.const(0, x.flat[0].frac)
        prod = product_sig(nl, const_product(nl, total, r, rfrac, ctx.opts))
        out[idx] = _cast_to(nl, prod, res)
    if ctx.node.op == "global_avgpool":
        out = out.reshape(out.shape[0], *([1] * (x.ndim - 1)))
    return [out]


@register("flatten")
def emit_flatten(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    return [ins[0].reshape(-1)]


@register("reshape")
def emit_reshape(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    return [ins[0].reshape(*ctx.node.attrs["shape"])]


@register("transpose")
def emit_transpose(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    return [ins[0].transpose(*[int(p) for p in ctx.node.attrs["perm"]])]
