"""A dense layer with reuse factor R: its outputs in R groups, one group per clock.

Why this form. A fully parallel layer multiplies every input by a constant, and a
constant product is a few shift-and-add terms (shared across outputs by
:mod:`~lightspeed.firmware.verilog.cse`). Sharing that hardware between outputs
means the constant changes from clock to clock, so the product needs a real
multiplier: each of the ``ceil(n_out / R)`` output slots holds one multiplier per
input, fed by a small weight ROM addressed by the clock's group index (hls4ml's
``reuse_factor`` does the same), and one adder tree. Multipliers, adders and ROMs
all scale as ``n_in * n_out / R``; the control is one phase counter for the whole
design plus enable registers at the layer's inputs (held for R clocks) and outputs
(each loaded on its group's clock). Splitting the *outputs* keeps every output's
multiply-accumulate whole, in one clock, so the contract of :mod:`lightspeed.ops.mac`
(per-product casts, accumulation order) is the fully parallel one: same
:func:`~lightspeed.firmware.verilog.arith.plan_products` / ``finish_mac``, bit-exact.

Slot inputs whose weight is the same in every group stay constant products; one
non-zero weight that is zero in the other groups (pruned weights) is that constant
product of the input gated by a 1-bit ROM (an AND on the input, no multiplier); inputs whose weights are zero
in every group cost nothing, so pruning still pays.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Sig
from lightspeed.firmware.reuse import groups
from lightspeed.firmware.verilog.arith import (
    Product,
    const_product,
    finish_mac,
    plan_products,
    trailing_zeros,
)
from lightspeed.fixed import requantize


def dense_reuse(ctx, rows: np.ndarray) -> np.ndarray:
    """``rows`` (B, fan_in) signals -> (B, fan_out) signals, ``ctx.reuse`` groups per row."""
    w = np.asarray(ctx.qparams["weight"])
    fan_out = w.shape[1]
    out = np.empty((rows.shape[0], fan_out), dtype=object)
    for r in range(rows.shape[0]):
        out[r] = _one_row(ctx, list(rows[r]), w)
    return out


def _one_row(ctx, xs: list, w: np.ndarray) -> list:
    nl, p, opts = ctx.nl, ctx.prec, ctx.opts
    fan_out = w.shape[1]
    n_groups, per = groups(fan_out, ctx.reuse)
    acc_t, res_t, w_t = p["accum"], p["result"], p["weight"]
    bias = ctx.qparams.get("bias")
    acc0 = (
        np.zeros(fan_out, dtype=object)
        if bias is None
        else requantize(np.asarray(bias, dtype=object), p["bias"].frac, acc_t)
    )
    # hold the input vector for the layer's clocks (captured on its first)
    live = [x for x in xs if isinstance(x, Sig)]
    s_in = max((nl.net(x).stage for x in live), default=0)
    held = [
        None
        if not isinstance(x, Sig)
        else nl.hold(Sig(nl.at_stage(x.net, s_in), x.frac), 0, s_in + 1)
        for x in xs
    ]
    phase = nl.phase(s_in + 1)
    ii = nl.ii

    def by_group(col: np.ndarray) -> list[int]:
        """Values for each phase 0..II-1 of one slot (0 beyond the used groups)."""
        return [int(col[g]) if g < len(col) else 0 for g in range(ii)]

    results = []
    for k in range(per):
        cols = [g * per + k for g in range(n_groups) if g * per + k < fan_out]
        products: list[Product] = []
        biases = [int(acc0[j]) for j in cols]
        b0 = biases[0] if len(set(biases)) == 1 else 0
        if len(set(biases)) > 1:
            rom = nl.rom(phase, by_group(np.array(biases, dtype=object)), acc_t.frac)
            products.append(Product([(rom, False)], acc_t.frac))
        for i, x in enumerate(held):
            if x is None or nl.net(x).lo == nl.net(x).hi == 0:
                continue
            wv = [int(w[i, j]) for j in cols]
            if not any(wv):
                continue
            nonzero = {v for v in wv if v}
            if len(set(wv)) == 1:
                products.append(const_product(nl, x, wv[0], w_t.frac, opts))
                continue
            if len(nonzero) == 1:
                # one weight or zero (pruned): the constant product, gated by a 1-bit ROM
                pattern = tuple(int(v != 0) for v in wv)
                key = ("reuse_gate", x.net, pattern)
                gated = nl.memo.get(key)
                if gated is None:  # the input, or 0 in the groups whose weight is pruned
                    on = nl.rom(phase, by_group(np.array(pattern, dtype=object)), 0)
                    gated = nl.memo[key] = nl.select_pos(on, x, nl.const(0, x.frac))
                products.append(const_product(nl, gated, nonzero.pop(), w_t.frac, opts))
                continue
            tz = min(trailing_zeros(v) for v in wv if v)
            table = by_group(np.array([v >> tz for v in wv], dtype=object))
            coef = nl.rom(phase, table, 0)
            m = nl.mul(x, coef)
            frac = x.frac + w_t.frac - tz
            products.append(Product([(Sig(m.net, frac), False)], frac))
        plan = plan_products(nl, products, b0, acc_t, res_t)
        results.append((cols, finish_mac(nl, plan)))
    # align the slots' results, then load each group's outputs on its clock
    e = max((nl.net(s).stage for _, s in results), default=s_in + 1)
    out: list = [None] * fan_out
    for cols, s in results:
        s = Sig(nl.at_stage(s.net, e), s.frac)
        for g, j in enumerate(cols):
            out[j] = nl.hold(s, g, e + n_groups)
    return out
