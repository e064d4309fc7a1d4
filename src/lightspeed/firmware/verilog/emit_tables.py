"""Emitters for :mod:`lightspeed.ops.tables`: Sigmoid, Tanh and Softmax as ROM look-ups.

Lookup tables follow the index rule of :mod:`lightspeed.ops.tables` exactly:
``floor((x - lo) / step)`` with ``step = 2**k`` (a shift of the input word),
minus the table start, clamped to ``[0, size - 1]``, then a ROM read. The
table geometry (range, sizes, steps) comes from ``table_geometry`` and
``softmax_geometry``, never from the node's attributes directly.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Netlist, Sig
from lightspeed.firmware.verilog.arith import cast_to, map_sigs
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.tables import softmax_geometry, table_geometry, table_layout


def table_index(
    nl: Netlist, s: Sig, lo: float, step_log2: int, size: int, to_zero: bool = False
) -> Sig:
    """ROM address of x = s: ``clamp(floor(x / 2**step_log2) - lo / 2**step_log2, 0, size-1)``
    (``trunc`` instead of ``floor`` with ``to_zero``: the hls4ml table layout)."""
    m = Sig(s.net, 0)  # the integer word itself
    sh = -step_log2 - s.frac  # x / step = m * 2**sh
    if sh >= 0:
        q = nl.cast(m, sh, "TRN") if sh else m  # left shift (wiring)
        q = Sig(q.net, 0)
    else:  # division by 2**-sh: drop bits (rounding toward zero for the hls4ml layout)
        q = Sig(nl.cast(m, sh, "TRN_ZERO" if to_zero else "TRN").net, 0)
    base = round(lo * 2.0**-step_log2)
    d = nl.add(q, nl.const(-base, 0)) if base else q
    return nl.clamp(d, 0, size - 1)


@register("sigmoid")
@register("tanh")
def emit_unary_table(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res, tt = ctx.nl, ctx.prec["result"], ctx.prec["table"]
    lo, _, size, step_log2 = table_geometry(ctx.node)
    to_zero = table_layout(ctx.node) == "hls4ml"
    table = ctx.qparams["table"]

    def one(s: Sig) -> Sig:
        entry = nl.rom(table_index(nl, s, lo, step_log2, size, to_zero), table, tt.frac)
        return cast_to(nl, entry, res)

    return [map_sigs(ins[0], one)]


@register("softmax")
def emit_softmax(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, p, q = ctx.nl, ctx.prec, ctx.qparams
    x = ins[0]
    n = x.shape[-1]
    r, es, e_step, isz, i_step = softmax_geometry(ctx.node, n)
    et, acc_t, inv_t, res = p["exp_table"], p["accum"], p["inv_table"], p["result"]
    rows = x.reshape(-1, n)
    out = np.empty(rows.shape, dtype=object)
    for ri in range(rows.shape[0]):
        xs = list(rows[ri])
        mx = nl.max_tree(xs)
        es_sig = []
        for s in xs:
            d = nl.add(s, mx, sub=True)
            es_sig.append(nl.rom(table_index(nl, d, -r, e_step, es), q["exp_table"], et.frac))
        total = nl.sum([(e, False) for e in es_sig])
        s_acc = nl.cast(total, acc_t.frac, acc_t.rounding, acc_t)
        inv = nl.rom(table_index(nl, s_acc, 0.0, i_step, isz), q["inv_table"], inv_t.frac)
        for j, e in enumerate(es_sig):
            out[ri, j] = cast_to(nl, nl.mul(e, inv), res)
    return [out.reshape(x.shape)]
