"""Emitters for :mod:`lightspeed.ops.smooth`: ELU, SELU, Softplus, Softsign, GELU (ROM look-up plus a pass-through).

The table index follows :mod:`lightspeed.ops.tables` (``table_index``); the
branch is chosen on the input word exactly as the contract states (x > 0 for
ELU/SELU, x >= hi for Softplus/GELU, none for Softsign), and a branch the input's bounds rule out is
not built.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Sig
from lightspeed.firmware.verilog.arith import cast_to, const_product, map_sigs, product_sig
from lightspeed.firmware.verilog.emit_tables import table_index
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.smooth import direct_branch, geometry, pass_threshold


@register("elu")
@register("selu")
@register("softplus")
@register("softsign")
@register("gelu")
def emit_smooth(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res, tt, op = ctx.nl, ctx.prec["result"], ctx.prec["table"], ctx.node.op
    lo, _, size, step_log2 = geometry(ctx.node)
    table = ctx.qparams["table"]
    # x takes the direct branch when x.m >= first (x > 0, or x >= hi for softplus/gelu)
    branch = direct_branch(op)
    first = pass_threshold(ctx.node, ctx.in_types[0].frac) if branch == "hi" else 1

    def direct(s: Sig) -> Sig:
        if op != "selu":
            return cast_to(nl, s, res)
        gamma = int(np.asarray(ctx.qparams["gamma"]).reshape(()))
        if gamma == 0:
            return nl.const(0, res.frac)
        p = product_sig(nl, const_product(nl, s, gamma, ctx.prec["param"].frac, ctx.opts))
        return cast_to(nl, p, res)

    def one(s: Sig) -> Sig:
        n = nl.net(s)
        if branch is not None and n.lo >= first:
            return direct(s)
        entry = nl.rom(table_index(nl, s, lo, step_log2, size), table, tt.frac)
        looked_up = cast_to(nl, entry, res)
        if branch is None or n.hi < first:
            return looked_up
        cond = nl.add(Sig(s.net, 0), nl.const(-(first - 1), 0))  # x.m - first + 1 > 0
        return nl.select_pos(cond, direct(s), looked_up)

    return [map_sigs(ins[0], one)]
