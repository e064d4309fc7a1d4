"""Emitter for :mod:`lightspeed.ops.quant`: a cast to the result type (fused into the stage before)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import cast_to, map_sigs
from lightspeed.firmware.verilog.lowering import EmitContext, register


@register("quant")
def emit_quant(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    res = ctx.prec["result"]
    return [map_sigs(ins[0], lambda s: cast_to(ctx.nl, s, res))]


@register("fixed_quant")
def emit_fixed_quant(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    """Each element cast to its own type, then (exactly) to the tensor's covering type."""
    from lightspeed.ops.quant import element_groups

    res = ctx.prec["result"]
    x = ins[0].reshape(-1)
    out = np.empty(x.shape, dtype=object)
    zero = cast_to(ctx.nl, ctx.nl.const(0, res.frac), res)
    for t, idx in element_groups(ctx.node):
        for j in idx:
            out[j] = zero if t is None else cast_to(ctx.nl, cast_to(ctx.nl, x[j], t), res)
    return [out.reshape(ins[0].shape)]
