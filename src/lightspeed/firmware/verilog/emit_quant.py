"""Emitter for :mod:`lightspeed.ops.quant`: a cast to the result type (fused into the stage before)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import cast_to, map_sigs
from lightspeed.firmware.verilog.lowering import EmitContext, register


@register("quant")
def emit_quant(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    res = ctx.prec["result"]
    return [map_sigs(ins[0], lambda s: cast_to(ctx.nl, s, res))]
