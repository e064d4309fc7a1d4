"""HLS emitter for :mod:`lightspeed.ops.quant`: a cast to the result type."""

from __future__ import annotations

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import elementwise


@register("quant")
def emit_quant(ctx: EmitContext) -> list[str]:
    return elementwise(ctx.n_out, f"({ctx.out_ctype})x[i]")
