"""HLS emitter for :mod:`lightspeed.ops.threshold`: count the thresholds each input reaches."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, ctype
from lightspeed.fixed import FixedType
from lightspeed.ops.threshold import int_thresholds


@register("multithreshold")
def emit_multithreshold(ctx: EmitContext) -> list[str]:
    p, t_in = ctx.name, ctx.in_types[0]
    thr = int_thresholds(ctx.node, t_in)
    # one bit more than the input on both ends: "one past the range" is a threshold too
    t_thr = FixedType(t_in.width + 2, t_in.integer + 2, True, "TRN", "WRAP")
    rows = ", ".join("{" + ", ".join(cnum(int(v), t_in) for v in r) + "}" for r in thr)
    c, b = thr.shape
    ctx.w.consts.append(f"static const {ctype(t_thr)} {p}_thr[{c}][{b}] = {{{rows}}};")
    shape = ctx.in_shapes[0]
    axis = int(ctx.node.attrs.get("axis", 0)) % max(len(shape), 1)
    inner = int(np.prod(shape[axis + 1 :])) if shape else 1
    chan = f"(i / {inner}) % {shape[axis]}" if c > 1 else "0"
    return [
        f"  for (int i = 0; i < {ctx.n_out}; i++) {{",
        "    #pragma HLS UNROLL",
        f"    int c = {chan}, n = 0;",
        f"    for (int j = 0; j < {b}; j++) {{",
        "      #pragma HLS UNROLL",
        f"      n += x[i] >= {p}_thr[c][j] ? 1 : 0;",
        "    }",
        f"    y[i] = ({ctx.out_ctype})n;",
        "  }",
    ]
