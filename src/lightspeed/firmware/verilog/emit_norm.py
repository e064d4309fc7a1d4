"""Emitters for :mod:`lightspeed.ops.norm`: LayerNorm and RMSNorm, one row at a time.

The contract of :mod:`lightspeed.ops.norm` step by step: exact adder trees for the
sums, the 1/N constant as a shift-and-add (or DSP) product, squares and the
final ``d * inv`` as signal products. The inverse square root normalizes the
variance word with a greedy chain of even left shifts (32, 16, 8, 4, 2 bits:
shift when the shifted word still fits, which gives the largest even shift),
reads the ROM at the top ``log2(table_size)`` bits and undoes half of each
shift taken on the entry (the same conditions select it). The ROM and the
constants come from the op module's functions (``inv_sqrt_table`` via the
quantized params, ``recip``, ``eps_int``), never from the node's attributes.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Netlist, Sig
from lightspeed.firmware.verilog.arith import cast_to, const_product, product_sig
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.fixed import FixedType
from lightspeed.ops.norm import check_var_type, eps_int, recip, table_bits_log2


def shift_stages(width: int) -> list[int]:
    """Even shifts 2, 4, 8, ... (largest first) whose sum reaches ``width``."""
    ks, total = [], 0
    k = 2
    while total < width:
        ks.append(k)
        total += k
        k *= 2
    return ks[::-1]


def _times_recip(ctx: EmitContext, s: Sig, n: int) -> Sig:
    rc, r = recip(n)
    return product_sig(ctx.nl, const_product(ctx.nl, s, rc, r, ctx.opts))


def _inverse_sqrt(ctx: EmitContext, v: Sig) -> Sig:
    nl, p = ctx.nl, ctx.prec
    vt, tt = p["var"], p["table"]
    w, bits = vt.width, table_bits_log2(ctx.node)
    word = FixedType(w, w, False, "TRN", "WRAP")
    u = Sig(v.net, 0)
    taken: list[tuple[Sig, int]] = []
    for k in shift_stages(w):
        if k >= w:  # v >= 1 never fits shifted this far
            continue
        cond = nl.add(nl.const(1 << (w - k), 0), u, sub=True)  # > 0 iff u << k < 2**w
        shifted = nl.cast(Sig(nl.cast(u, k).net, 0), 0, "TRN", word)
        u = nl.select_pos(cond, shifted, u)
        taken.append((cond, k))
    idx = Sig(nl.cast(u, bits - w).net, 0)  # u >> (w - bits) (or << when w < bits)
    r = Sig(nl.rom(idx, ctx.qparams["table"], 0).net, 0)
    for cond, k in taken:
        r = nl.select_pos(cond, Sig(nl.cast(r, k // 2).net, 0), r)
    return cast_to(nl, Sig(r.net, tt.frac + vt.integer // 2), p["inv"])


def _row(ctx: EmitContext, xs: list[Sig]) -> list[Sig]:
    nl, p, q = ctx.nl, ctx.prec, ctx.qparams
    n = len(xs)
    vt = p["var"]
    check_var_type(ctx.node, vt)
    if ctx.node.op == "layernorm":
        acc = p["accum"]
        mean = cast_to(nl, _times_recip(ctx, nl.sum([(x, False) for x in xs]), n), acc)
        ds = [cast_to(nl, nl.add(x, mean, sub=True), acc) for x in xs]
    else:
        ds = list(xs)
    s2 = nl.sum([(nl.mul(d, d), False) for d in ds])
    total = _times_recip(ctx, s2, n)
    e = eps_int(ctx.node, vt)
    if e:
        total = nl.add(total, nl.const(e, vt.frac))
    v = nl.clamp(cast_to(nl, total, vt), 1, None)
    inv = _inverse_sqrt(ctx, v)
    out = []
    for i, d in enumerate(ds):
        z = cast_to(nl, nl.mul(d, inv), p["norm"])
        terms: list[tuple[Sig, bool]] = [(z, False)]
        if "weight" in q:
            terms = _scaled(nl, ctx, z, int(q["weight"][i]))
        if "bias" in q and int(q["bias"][i]):
            terms.append((nl.const(int(q["bias"][i]), p["bias"].frac), False))
        out.append(cast_to(nl, nl.sum(terms) if terms else nl.const(0, 0), p["result"]))
    return out


def _scaled(nl: Netlist, ctx: EmitContext, z: Sig, g: int) -> list[tuple[Sig, bool]]:
    if g == 0:
        return []
    return list(const_product(nl, z, g, ctx.prec["weight"].frac, ctx.opts).terms)


@register("layernorm")
@register("rmsnorm")
def emit_norm(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    out = np.empty(rows.shape, dtype=object)
    for ri in range(rows.shape[0]):
        out[ri] = _row(ctx, list(rows[ri]))
    return [out.reshape(x.shape)]
