"""HLS emitters for :mod:`lightspeed.ops.smooth`: ELU, SELU, Softplus, Softsign, GELU (ROM look-up plus a pass-through).

Addresses follow the index rule of :mod:`lightspeed.ops.tables` through the
generated ``table_index`` helper; the branch is chosen on the input exactly as
the contract states (x > 0 for ELU/SELU, x >= hi for Softplus/GELU, none for Softsign).
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.emit_tables import table_lookup
from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, elementwise
from lightspeed.ops.smooth import direct_branch, geometry, pass_threshold


@register("elu")
@register("selu")
@register("softplus")
@register("softsign")
@register("gelu")
def emit_smooth(ctx: EmitContext) -> list[str]:
    p, t_in, out_t, op = ctx.name, ctx.in_types[0], ctx.out_ctype, ctx.node.op
    lo, _, size, step_log2 = geometry(ctx.node)
    looked_up = table_lookup(ctx, lo, size, step_log2)
    if op == "selu":
        g = int(np.asarray(ctx.qparams["gamma"]).reshape(()))
        ctx.w.consts.append(
            f"static const {ctx.role['param']} {p}_gamma = {cnum(g, ctx.prec['param'])};"
        )
        direct = f"({out_t})(x[i] * {p}_gamma)"
    else:
        direct = f"({out_t})x[i]"
    branch = direct_branch(op)
    if branch is None:
        return elementwise(ctx.n_out, looked_up)
    if branch == "pos":
        return elementwise(ctx.n_out, f"x[i] > 0 ? {direct} : {looked_up}")
    first = pass_threshold(ctx.node, t_in.frac)  # x >= hi  <=>  x.m >= first
    if first > t_in.max_int:
        return elementwise(ctx.n_out, looked_up)
    if first <= t_in.min_int:
        return elementwise(ctx.n_out, direct)
    ctx.w.consts.append(f"static const {ctx.in_ctypes[0]} {p}_hi = {cnum(first, t_in)};")
    return elementwise(ctx.n_out, f"x[i] >= {p}_hi ? {direct} : {looked_up}")
