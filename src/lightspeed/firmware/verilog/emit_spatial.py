"""Emitters for :mod:`lightspeed.ops.spatial`: pad, slice, resize, depth/space moves as pure wiring.

Each output signal is the input signal its index map names, or the padding
constant (:func:`~lightspeed.ops.spatial.pad_fill`) at the tensor's scale.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import cast_to, map_sigs
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.spatial import index_map, pad_fill


@register("pad")
@register("slice")
@register("take")
@register("resize")
@register("depth_to_space")
@register("space_to_depth")
def emit_gather(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    idx = index_map(ctx.node, x.shape)
    flat = x.reshape(-1)
    zero = ctx.nl.const(pad_fill(ctx.node, ctx.in_types[0]), ctx.in_types[0].frac)
    out = np.empty(idx.shape, dtype=object)
    for pos, i in np.ndenumerate(idx):
        out[pos] = flat[i] if i >= 0 else zero
    t = ctx.prec.get("result", ctx.in_types[0])
    if t != ctx.in_types[0]:  # a pad whose type was widened for its value, or pinned
        out = map_sigs(out, lambda s: cast_to(ctx.nl, s, t))
    return [out]
