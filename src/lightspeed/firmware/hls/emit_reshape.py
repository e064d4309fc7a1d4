"""HLS emitters for :mod:`lightspeed.ops.reshape`: flatten, reshape, transpose as index-table copies."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import elementwise, flat_size


@register("flatten")
@register("reshape")
@register("transpose")
def emit_reshape(ctx: EmitContext) -> list[str]:
    xshape = ctx.in_shapes[0]
    idx = np.arange(flat_size(xshape)).reshape(xshape)
    if ctx.node.op == "transpose":
        idx = idx.transpose(*[int(v) for v in ctx.node.attrs["perm"]])
    ctx.w.int_table(f"{ctx.name}_idx", idx.reshape(-1))
    return elementwise(ctx.n_out, f"x[{ctx.name}_idx[i]]")
