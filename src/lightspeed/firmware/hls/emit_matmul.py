"""HLS emitter for :mod:`lightspeed.ops.matmul`: one MAC loop per output, operand offsets
from index tables (broadcast leading axes)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.mac import mac_loop
from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import flat_size


@register("matmul")
def emit_matmul(ctx: EmitContext) -> list[str]:
    sa, sb = ctx.in_shapes
    lead = np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
    m, k, n = sa[-2], sa[-1], sb[-1]
    ia = np.broadcast_to(np.arange(flat_size(sa)).reshape(sa), (*lead, m, k))[..., :, :1]
    ib = np.broadcast_to(np.arange(flat_size(sb)).reshape(sb), (*lead, k, n))[..., :1, :]
    a0 = np.broadcast_to(ia, (*lead, m, n)).reshape(-1)  # a[..., i, 0] of each output
    b0 = np.broadcast_to(ib, (*lead, m, n)).reshape(-1)  # b[..., 0, j] of each output
    p = ctx.name
    ctx.w.int_table(f"{p}_a", a0)
    ctx.w.int_table(f"{p}_b", b0)
    return [
        f"  for (int o = 0; o < {ctx.n_out}; o++) {{",
        "    #pragma HLS UNROLL",
        *mac_loop(
            ctx.role["accum"],
            ctx.out_ctype,
            f"x0[{p}_a[o] + t]",
            f"x1[{p}_b[o] + t * {n}]",
            "y[o]",
            loop=("t", k),
            indent=4,
        ),
        "  }",
    ]
