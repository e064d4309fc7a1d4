"""Emitter for :mod:`lightspeed.ops.dense`: one MAC (:func:`arith.plan_mac`, :func:`arith.finish_mac`) per output."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import finish_mac, plan_mac
from lightspeed.firmware.verilog.cse import share_subexpressions
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.firmware.verilog.reuse_mac import dense_reuse


@register("dense")
def emit_dense(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    p, q = ctx.prec, ctx.qparams
    w = q["weight"]
    bias = q.get("bias")
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    if ctx.reuse > 1:  # outputs in groups on shared multipliers, one group per clock
        return [dense_reuse(ctx, rows).reshape(*lead, w.shape[1])]
    out = np.empty((rows.shape[0], w.shape[1]), dtype=object)
    for r in range(rows.shape[0]):
        xs = list(rows[r])
        plans = [
            plan_mac(
                ctx.nl,
                xs,
                w[:, j],
                p["weight"],
                None if bias is None else bias[j],
                p.get("bias"),
                p["accum"],
                p["result"],
                ctx.opts,
            )
            for j in range(w.shape[1])
        ]
        share(ctx, plans)
        for j, plan in enumerate(plans):
            out[r, j] = finish_mac(ctx.nl, plan)
    return [out.reshape(*lead, w.shape[1])]


def share(ctx: EmitContext, plans: list) -> None:
    """Regroup the exact adder trees of one weight matrix's outputs (shared subexpressions)."""
    if not ctx.opts.share_adders:
        return
    eligible = [pl for pl in plans if pl.tree is not None]
    if len(eligible) > 1:
        lists, _ = share_subexpressions(ctx.nl, [pl.tree for pl in eligible])
        for pl, terms in zip(eligible, lists, strict=True):
            pl.tree = terms
