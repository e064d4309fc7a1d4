"""HLS emitter for :mod:`lightspeed.ops.dense`: one MAC loop per output, over the last axis."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.mac import mac_loop, weight_arrays
from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import flat_size


@register("dense")
def emit_dense(ctx: EmitContext) -> list[str]:
    p, role = ctx.name, ctx.role
    wm = np.asarray(ctx.qparams["weight"])  # (fan_in, fan_out)
    fan_in, fan_out = wm.shape
    xshape = ctx.in_shapes[0]
    rows = flat_size(xshape[:-1]) if len(xshape) > 1 else 1
    bias = weight_arrays(ctx, wm)
    return [
        f"  for (int r = 0; r < {rows}; r++) {{",
        "    #pragma HLS UNROLL",
        f"    for (int j = 0; j < {fan_out}; j++) {{",
        "      #pragma HLS UNROLL",
        *mac_loop(
            role["accum"],
            ctx.out_ctype,
            f"x[r * {fan_in} + i]",
            f"{p}_w[j][i]",
            f"y[r * {fan_out} + j]",
            bias=None if bias is None else f"{bias}[j]",
            loop=("i", fan_in),
            indent=6,
        ),
        "    }",
        "  }",
    ]
