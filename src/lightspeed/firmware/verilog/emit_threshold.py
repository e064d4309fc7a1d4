"""Emitter for :mod:`lightspeed.ops.threshold`: one comparator per threshold, summed."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Sig
from lightspeed.firmware.verilog.arith import cast_to
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.threshold import int_thresholds


@register("multithreshold")
def emit_multithreshold(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, t_in, res = ctx.nl, ctx.in_types[0], ctx.prec["result"]
    thr = int_thresholds(ctx.node, t_in)
    x = ins[0]
    axis = int(ctx.node.attrs.get("axis", 0)) % max(x.ndim, 1)
    one, zero = nl.const(1, 0), nl.const(0, 0)
    out = np.empty(x.shape, dtype=object)
    for idx, s in np.ndenumerate(x):
        row = thr[idx[axis] if x.ndim and thr.shape[0] > 1 else 0]
        bits: list[tuple[Sig, bool]] = []
        for t in row:
            # x >= t  <=>  x - t + 1 > 0 (integers on the input's grid)
            cond = nl.add(s, nl.const(1 - int(t), t_in.frac))
            bits.append((nl.select_pos(cond, one, zero), False))
        out[idx] = cast_to(nl, nl.sum(bits), res)
    return [out]
