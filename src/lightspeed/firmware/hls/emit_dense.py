"""HLS emitter for :mod:`lightspeed.ops.dense`: one MAC loop per output, over the last axis."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.mac import mac_loop, weight_arrays
from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import flat_size
from lightspeed.firmware.reuse import groups, layer_factors


@register("dense")
def emit_dense(ctx: EmitContext) -> list[str]:
    p, role = ctx.name, ctx.role
    wm = np.asarray(ctx.qparams["weight"])  # (fan_in, fan_out)
    fan_in, fan_out = wm.shape
    xshape = ctx.in_shapes[0]
    rows = flat_size(xshape[:-1]) if len(xshape) > 1 else 1
    bias = weight_arrays(ctx, wm)
    rf = layer_factors(ctx.w.q, ctx.w.opts).get(ctx.node.name, 1)
    return [
        *reuse_pragmas(p, bias, fan_in, fan_out, rf),
        f"  for (int r = 0; r < {rows}; r++) {{",
        "    #pragma HLS UNROLL",
        f"    for (int j = 0; j < {fan_out}; j++) {{",
        "      #pragma HLS UNROLL" + (f" factor={groups(fan_out, rf)[1]}" if rf > 1 else ""),
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


def reuse_pragmas(p: str, bias: str | None, fan_in: int, fan_out: int, rf: int) -> list[str]:
    """hls4ml-style reuse factor ``rf``: the output loop unrolled by ``ceil(fan_out / rf)``
    (one group of outputs per clock, as the Verilog backend does), the weights partitioned
    to feed one group per clock, and at most ``fan_in * ceil(fan_out / rf)`` multipliers."""
    if rf <= 1:
        return []
    per = groups(fan_out, rf)[1]
    lines = [
        f"  // reuse factor {rf}: {per} of {fan_out} outputs per clock on shared multipliers",
        f"  #pragma HLS ARRAY_PARTITION variable={p}_w cyclic factor={per} dim=1",
        f"  #pragma HLS ARRAY_PARTITION variable={p}_w complete dim=2",
        f"  #pragma HLS ALLOCATION operation instances=mul limit={fan_in * per}",
    ]
    if bias is not None:
        lines.insert(3, f"  #pragma HLS ARRAY_PARTITION variable={bias} cyclic factor={per} dim=1")
    return lines
