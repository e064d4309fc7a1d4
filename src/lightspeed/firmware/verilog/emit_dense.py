"""Emitter for :mod:`lightspeed.ops.dense`: one MAC (see :func:`arith.mac`) per output."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import mac
from lightspeed.firmware.verilog.lowering import EmitContext, register


@register("dense")
def emit_dense(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    p, q = ctx.prec, ctx.qparams
    w = q["weight"]
    bias = q.get("bias")
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty((rows.shape[0], w.shape[1]), dtype=object)
    for r in range(rows.shape[0]):
        xs = list(rows[r])
        for j in range(w.shape[1]):
            out[r, j] = mac(
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
    return [out.reshape(*lead, w.shape[1])]
