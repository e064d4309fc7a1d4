"""HLS emitters for :mod:`lightspeed.ops.elementwise`: add, mul (broadcast by index tables), concat."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import elementwise, flat_size
from lightspeed.ops.elementwise import _axis


@register("add")
@register("mul")
def emit_add_mul(ctx: EmitContext) -> list[str]:
    # broadcasting through index tables
    p = ctx.name
    tabs = []
    for i, shape in enumerate(ctx.in_shapes):
        idx = np.broadcast_to(np.arange(flat_size(shape)).reshape(shape), ctx.out_shape)
        ctx.w.int_table(f"{p}_i{i}", idx.reshape(-1))
        tabs.append(f"x{i}[{p}_i{i}[i]]")
    sym = " + " if ctx.node.op == "add" else " * "
    return elementwise(ctx.n_out, f"({ctx.out_ctype})({sym.join(tabs)})")


@register("concat")
def emit_concat(ctx: EmitContext) -> list[str]:
    shapes = ctx.in_shapes
    parts = [np.full(s, i) for i, s in enumerate(shapes)]
    locs = [np.arange(flat_size(s)).reshape(s) for s in shapes]
    ax = _axis(ctx.node, len(shapes[0]))
    src = np.concatenate(parts, axis=ax).reshape(-1)
    loc = np.concatenate(locs, axis=ax).reshape(-1)
    return [f"  y[{i}] = ({ctx.out_ctype})x{int(src[i])}[{int(loc[i])}];" for i in range(ctx.n_out)]
