"""Emitters for :mod:`lightspeed.ops.pooling`: max-pool (max trees), average pools (sum times 1/K)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import cast_to, const_product, product_sig
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.pooling import pool_attrs, recip, windows


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
        out[idx] = cast_to(nl, nl.max_tree(cands), res)
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
        out[idx] = cast_to(nl, prod, res)
    if ctx.node.op == "global_avgpool":
        out = out.reshape(out.shape[0], *([1] * (x.ndim - 1)))
    return [out]
