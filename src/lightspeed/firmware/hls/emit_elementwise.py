"""HLS emitters for :mod:`lightspeed.ops.elementwise`: add, sub, max, min, mul, mean (broadcast by index tables), concat."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, elementwise, flat_size
from lightspeed.ops.base import exact_type
from lightspeed.ops.elementwise import concat_axis


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
    ax = concat_axis(ctx.node, len(shapes[0]))
    src = np.concatenate(parts, axis=ax).reshape(-1)
    loc = np.concatenate(locs, axis=ax).reshape(-1)
    return [f"  y[{i}] = ({ctx.out_ctype})x{int(src[i])}[{int(loc[i])}];" for i in range(ctx.n_out)]


def _broadcast_reads(ctx: EmitContext) -> list[str]:
    """``x<i>[index]`` for every input, broadcast to the output through index tables."""
    p, reads = ctx.name, []
    for i, shape in enumerate(ctx.in_shapes):
        idx = np.broadcast_to(np.arange(flat_size(shape)).reshape(shape), ctx.out_shape)
        ctx.w.int_table(f"{p}_i{i}", idx.reshape(-1))
        reads.append(f"x{i if len(ctx.in_shapes) > 1 else ''}[{p}_i{i}[i]]")
    return reads


@register("sub")
def emit_sub(ctx: EmitContext) -> list[str]:
    a, b = _broadcast_reads(ctx)
    return elementwise(ctx.n_out, f"({ctx.out_ctype})({a} - {b})")


@register("max")
@register("min")
def emit_extreme(ctx: EmitContext) -> list[str]:
    """Each input converted exactly to the type covering them all, compared, cast to result."""
    frac = max(t.frac for t in ctx.in_types)
    lo = min(t.min_int << (frac - t.frac) for t in ctx.in_types)
    hi = max(t.max_int << (frac - t.frac) for t in ctx.in_types)
    cover = ctx.w.typedef(exact_type(lo, hi, frac), f"{ctx.node.name}_cover")
    cmp = ">" if ctx.node.op == "max" else "<"
    reads = _broadcast_reads(ctx)
    lines = [
        f"  for (int i = 0; i < {ctx.n_out}; i++) {{",
        "    #pragma HLS UNROLL",
        f"    {cover} m = {reads[0]};",
    ]
    for j, r in enumerate(reads[1:], 1):
        lines.append(f"    {cover} v{j} = {r};")
        lines.append(f"    if (v{j} {cmp} m) m = v{j};")
    return [*lines, f"    y[i] = ({ctx.out_ctype})m;", "  }"]


@register("mean")
def emit_mean(ctx: EmitContext) -> list[str]:
    """The exact sum in a type that holds every partial sum, times k = 1/N (exact), cast."""
    p = ctx.name
    frac = max(t.frac for t in ctx.in_types)
    lo = sum(t.min_int << (frac - t.frac) for t in ctx.in_types)
    hi = sum(t.max_int << (frac - t.frac) for t in ctx.in_types)
    sum_t = ctx.w.typedef(exact_type(lo, hi, frac), f"{ctx.node.name}_sum")
    k = int(np.asarray(ctx.qparams["k"]).reshape(()))
    ctx.w.consts.append(f"static const {ctx.role['param']} {p}_k = {cnum(k, ctx.prec['param'])};")
    reads = _broadcast_reads(ctx)
    lines = [
        f"  for (int i = 0; i < {ctx.n_out}; i++) {{",
        "    #pragma HLS UNROLL",
        f"    {sum_t} s = {reads[0]};",
    ]
    lines += [f"    s += {r};" for r in reads[1:]]
    return [*lines, f"    y[i] = ({ctx.out_ctype})(s * {p}_k);", "  }"]
