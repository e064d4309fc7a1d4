"""HLS emitter for :mod:`lightspeed.ops.resample`: linear upsampling over tap tables.

Each output sums ``x[idx] * w`` (weights exact in an ``ap_ufixed`` at ``d * f``
fractional bits) in the accumulator type, then casts to the result type.
"""

from __future__ import annotations

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, ctype
from lightspeed.fixed import FixedType
from lightspeed.ops.resample import taps


@register("resize_linear")
def emit_resize_linear(ctx: EmitContext) -> list[str]:
    f = ctx.prec["weight"].frac
    ind, wts = taps(ctx.node, ctx.in_shapes[0], f)
    k = ind.shape[1]
    wf = ctx.prec["accum"].frac - ctx.in_types[0].frac  # d * f
    w_t = FixedType(wf + 2, 2, False)  # a product of axis weights is <= 1
    ctx.w.int_table(f"{ctx.name}_idx", ind.reshape(-1))
    ctx.w.array(f"{ctx.name}_w", ctype(w_t), [cnum(int(w), w_t) for w in wts.flat], (wts.size,))
    return [
        f"  for (int o = 0; o < {ctx.n_out}; o++) {{",
        "    #pragma HLS UNROLL",
        f"    {ctx.role['accum']} s = 0;",
        f"    for (int j = 0; j < {k}; j++) {{",
        "      #pragma HLS UNROLL",
        f"      s += x[{ctx.name}_idx[o * {k} + j]] * {ctx.name}_w[o * {k} + j];",
        "    }",
        f"    y[o] = ({ctx.out_ctype})s;",
        "  }",
    ]
