"""HLS emitter for :mod:`lightspeed.ops.resample`: linear upsampling over tap tables.

Each output sums ``x[idx] * w`` (weights exact in an ``ap_ufixed`` at ``d * f``
fractional bits) in the exact sum type, then casts to a pinned accumulator
type (if any) and to the result type.
"""

from __future__ import annotations

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, ctype
from lightspeed.fixed import FixedType
from lightspeed.ops.resample import exact_accum, taps


@register("resize_linear")
def emit_resize_linear(ctx: EmitContext) -> list[str]:
    f = ctx.prec["weight"].frac
    ind, wts = taps(ctx.node, ctx.in_shapes[0], f)
    k = ind.shape[1]
    exact = exact_accum(ctx.node, ctx.in_types[0], ctx.in_shapes[0], f)
    wf = exact.frac - ctx.in_types[0].frac  # d * f
    cast = f"({ctx.role['accum']})" if ctx.prec["accum"] != exact else ""
    w_t = FixedType(wf + 2, 2, False)  # a product of axis weights is <= 1
    ctx.w.int_table(f"{ctx.name}_idx", ind.reshape(-1))
    ctx.w.array(f"{ctx.name}_w", ctype(w_t), [cnum(int(w), w_t) for w in wts.flat], (wts.size,))
    return [
        f"  for (int o = 0; o < {ctx.n_out}; o++) {{",
        "    #pragma HLS UNROLL",
        f"    {ctype(exact)} s = 0;",
        f"    for (int j = 0; j < {k}; j++) {{",
        "      #pragma HLS UNROLL",
        f"      s += x[{ctx.name}_idx[o * {k} + j]] * {ctx.name}_w[o * {k} + j];",
        "    }",
        f"    y[o] = ({ctx.out_ctype}){cast}s;",
        "  }",
    ]
