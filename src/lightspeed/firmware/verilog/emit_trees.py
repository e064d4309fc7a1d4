"""Emitter for ``tree_ensemble``: every tree in parallel, comparators + leaf mux + adder tree.

Per the contract in :mod:`lightspeed.ops.trees`:

* one comparator per distinct (feature, quantized threshold) pair, shared by
  all trees: ``x <= t`` on the common grid is emitted as ``(t + 1) - x > 0``;
  a threshold outside the input's range is no comparator at all (the branch
  is constant and the other subtree disappears);
* each tree is a multiplexer tree over its leaf constants (a leaf ROM
  addressed by the decisions), at the leaf type's scale when the cast to the
  accumulator is a mere shift (narrower muxes), else already cast;
* per output, the base score and the selected leaves go through a balanced
  adder tree (exact, or wrapping modulo 2**W: both order-free); a saturating
  accumulator that might overflow becomes the chain in tree order instead;
* the sum is cast to ``result``.

The netlist places the pipeline registers (comparators, mux levels and adder
levels are registered whenever the clock budget is used up).
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Sig
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.trees import accum_bound, accum_tables, ensemble


@register("tree_ensemble")
def emit_tree_ensemble(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, p, q = ctx.nl, ctx.prec, ctx.qparams
    e = ensemble(ctx.node)
    x = ins[0]
    th_t, acc_t, res_t = p["threshold"], p["accum"], p["result"]
    frac = max(ctx.in_types[0].frac, th_t.frac)
    thr = [int(v) << (frac - th_t.frac) for v in np.asarray(q["threshold"]).flat]
    leaf_acc, bias_acc = accum_tables(e, p, q)
    # where (accum_t)leaf is only a shift, multiplex the narrower leaf words and shift after
    leaf_t = p["leaf"]
    shift = acc_t.frac - leaf_t.frac
    lossless = shift >= 0 and np.array_equal(
        np.asarray(leaf_acc, dtype=object),
        np.asarray(q["leaf"], dtype=object) * (1 << max(shift, 0)),
    )
    conds: dict[tuple[int, int], Sig] = {}

    def decide(i: int) -> bool | Sig:
        """True/False for a constant branch (left/right), else the comparator (> 0 means left)."""
        xs = x[int(e.feature[i])]
        t = thr[i]
        if not isinstance(xs, Sig):  # a constant input (zero from upstream wiring)
            return int(xs) << frac <= t
        n = nl.net(xs)
        sh = frac - xs.frac
        if (n.hi << sh) <= t:
            return True
        if (n.lo << sh) > t:
            return False
        key = (xs.net, t)
        if key not in conds:
            conds[key] = nl.add(nl.const(t + 1, frac), xs, sub=True)
        return conds[key]

    def select(i: int, col: int) -> Sig:
        while e.feature[i] >= 0:
            d = decide(i)
            if d is True:
                i = int(e.left[i])
            elif d is False:
                i = int(e.right[i])
            else:
                a, b = select(int(e.left[i]), col), select(int(e.right[i]), col)
                if a.net == b.net:
                    return a
                return nl.select_pos(d, a, b)
        if lossless:
            return nl.const(int(q["leaf"][i, col]), leaf_t.frac)
        return nl.const(int(leaf_acc[i, col]), acc_t.frac)

    width = leaf_acc.shape[1]
    tree_out = [[select(int(r), c) for c in range(width)] for r in e.roots]
    bound = accum_bound(e, leaf_acc, bias_acc)
    wraps = acc_t.overflow == "WRAP"
    single = wraps or bound <= min(-acc_t.min_int, acc_t.max_int)
    out = np.empty(e.n_outputs, dtype=object)
    for k in range(e.n_outputs):
        if width == 1:
            mine = [tree_out[t][0] for t in range(e.n_trees) if max(int(e.tree_class[t]), 0) == k]
        else:
            mine = [tree_out[t][k] for t in range(e.n_trees)]
        base = nl.const(int(bias_acc[k]), acc_t.frac)
        if single:
            terms = [(base, False)] + [(s, False) for s in mine]
            total = nl.sum(terms, wrap_frac=(acc_t.width, acc_t.frac) if wraps else None)
            acc = nl.cast(total, acc_t.frac, "TRN", acc_t)
        else:  # saturating and may overflow: the order of the contract
            acc = base
            for s in mine:
                acc = nl.cast(nl.add(acc, s), acc_t.frac, "TRN", acc_t)
        out[k] = nl.cast(acc, res_t.frac, res_t.rounding, res_t)
    return [out]
