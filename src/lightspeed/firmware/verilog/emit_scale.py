"""Emitter for :mod:`lightspeed.ops.scale` (batchnorm): a one-term MAC per element."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import finish_mac, plan_mac
from lightspeed.firmware.verilog.lowering import EmitContext, register


@register("batchnorm")
def emit_batchnorm(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    p, q = ctx.prec, ctx.qparams
    scale, shift = q["scale"], q["shift"]
    y = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(*x.shape):
        c = idx[0]
        plan = plan_mac(
            ctx.nl,
            [x[idx]],  # type: ignore[list-item]
            np.array([scale[c]]),
            p["weight"],
            int(shift[c]),
            p["bias"],
            p["accum"],
            p["result"],
            ctx.opts,
        )
        y[idx] = finish_mac(ctx.nl, plan)
    return [y]
