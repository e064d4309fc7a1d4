"""HLS emitters for :mod:`lightspeed.ops.spatial`: pad, slice, resize, depth/space moves as index-table copies."""

from __future__ import annotations

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, elementwise
from lightspeed.ops.spatial import index_map, pad_fill


@register("pad")
@register("slice")
@register("take")
@register("resize")
@register("depth_to_space")
@register("space_to_depth")
def emit_gather(ctx: EmitContext) -> list[str]:
    idx = index_map(ctx.node, ctx.in_shapes[0]).reshape(-1)
    tab = f"{ctx.name}_idx"
    ctx.w.int_table(tab, idx)
    if (idx < 0).any():  # constant padding: the fill is exact in the output type
        fill = cnum(pad_fill(ctx.node, ctx.in_types[0]), ctx.in_types[0])
        return elementwise(
            ctx.n_out, f"{tab}[i] >= 0 ? ({ctx.out_ctype})x[{tab}[i]] : ({ctx.out_ctype}){fill}"
        )
    return elementwise(ctx.n_out, f"x[{tab}[i]]")
