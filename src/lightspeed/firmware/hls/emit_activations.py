"""HLS emitters for :mod:`lightspeed.ops.activations`: ReLU, Clip, LeakyReLU, HardSwish (element-wise)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, elementwise
from lightspeed.ops.activations import clip_int_bounds
from lightspeed.ops.base import exact_type


@register("relu")
def emit_relu(ctx: EmitContext) -> list[str]:
    out_t = ctx.out_ctype
    return elementwise(ctx.n_out, f"x[i] > 0 ? ({out_t})x[i] : ({out_t})0")


@register("clip")
def emit_clip(ctx: EmitContext) -> list[str]:
    p, t_in = ctx.name, ctx.in_types[0]
    lo, hi = clip_int_bounds(ctx.node, t_in)
    ctx.w.consts.append(
        f"static const {ctx.in_ctypes[0]} {p}_lo = {cnum(lo, t_in)}, {p}_hi = {cnum(hi, t_in)};"
    )
    expr = f"({ctx.out_ctype})(x[i] < {p}_lo ? {p}_lo : (x[i] > {p}_hi ? {p}_hi : x[i]))"
    return elementwise(ctx.n_out, expr)


@register("leaky_relu")
def emit_leaky_relu(ctx: EmitContext) -> list[str]:
    p, out_t = ctx.name, ctx.out_ctype
    a = int(np.asarray(ctx.qparams["alpha"]).reshape(()))
    ctx.w.consts.append(
        f"static const {ctx.role['param']} {p}_alpha = {cnum(a, ctx.prec['param'])};"
    )
    return elementwise(ctx.n_out, f"x[i] > 0 ? ({out_t})x[i] : ({out_t})(x[i] * {p}_alpha)")


@register("hard_swish")
def emit_hard_swish(ctx: EmitContext) -> list[str]:
    """x <= -3: 0, x >= 3: x, else the exact x * (x + 3) * k (ap_fixed products are exact)."""
    p, out_t, t_in = ctx.name, ctx.out_ctype, ctx.in_types[0]
    k = int(np.asarray(ctx.qparams["k"]).reshape(()))
    ctx.w.consts.append(f"static const {ctx.role['param']} {p}_k = {cnum(k, ctx.prec['param'])};")
    big = max(t_in.frac, 0)
    sh = big - t_in.frac
    plus3 = exact_type((t_in.min_int << sh) + (3 << big), (t_in.max_int << sh) + (3 << big), big)
    t3 = ctx.w.typedef(plus3, f"{ctx.node.name}_plus3")
    return [
        f"  for (int i = 0; i < {ctx.n_out}; i++) {{",
        "    #pragma HLS UNROLL",
        f"    {t3} t = x[i] + 3;  // exact: {t3} covers x + 3",
        f"    y[i] = x[i] >= 3 ? ({out_t})x[i] : (x[i] <= -3 ? ({out_t})0 : ({out_t})(x[i] * t * {p}_k));",
        "  }",
    ]
