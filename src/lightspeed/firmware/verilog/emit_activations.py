"""Emitters for :mod:`lightspeed.ops.activations`: ReLU, Clip, LeakyReLU, HardSwish (fused into the stage before)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Sig
from lightspeed.firmware.verilog.arith import cast_to, const_product, map_sigs, product_sig
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.activations import clip_int_bounds, hard_swish_bounds


@register("relu")
def emit_relu(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    res = ctx.prec["result"]
    return [map_sigs(ins[0], lambda s: cast_to(ctx.nl, ctx.nl.relu(s), res))]


@register("clip")
def emit_clip(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    res = ctx.prec["result"]
    lo, hi = clip_int_bounds(ctx.node, ctx.in_types[0])
    return [map_sigs(ins[0], lambda s: cast_to(ctx.nl, ctx.nl.clamp(s, lo, hi), res))]


@register("leaky_relu")
def emit_leaky(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    nl, res, a_t = ctx.nl, ctx.prec["result"], ctx.prec["param"]
    alpha = int(np.asarray(ctx.qparams["alpha"]).reshape(()))

    def one(s: Sig) -> Sig:
        pos = cast_to(nl, s, res)
        if alpha == 0:
            neg = nl.const(0, res.frac)
        else:
            prod = product_sig(nl, const_product(nl, s, alpha, a_t.frac, ctx.opts))
            neg = cast_to(nl, prod, res)
        if nl.net(s).lo > 0:
            return pos
        if nl.net(s).hi <= 0:
            return neg
        return nl.select_pos(s, pos, neg)

    return [map_sigs(ins[0], one)]


@register("hard_swish")
def emit_hard_swish(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    """The three branches of the contract, chosen on the input word; ruled-out ones not built."""
    nl, res, k_t = ctx.nl, ctx.prec["result"], ctx.prec["param"]
    k = int(np.asarray(ctx.qparams["k"]).reshape(()))
    f = ctx.in_types[0].frac
    big = max(f, 0)
    lo, hi = hard_swish_bounds(f)

    def one(s: Sig) -> Sig:
        n = nl.net(s)
        if n.lo >= hi:
            return cast_to(nl, s, res)
        zero = nl.const(0, res.frac)
        if n.hi <= lo:
            return zero
        if k == 0:
            mid = zero
        else:
            prod = nl.mul(s, nl.add(s, nl.const(3 << big, big)))  # x * (x + 3), exact
            mid = cast_to(nl, product_sig(nl, const_product(nl, prod, k, k_t.frac, ctx.opts)), res)
        word = Sig(s.net, 0)
        out = mid  # m > lo
        if n.lo <= lo:
            out = nl.select_pos(nl.add(word, nl.const(-lo, 0)), mid, zero)
        if n.hi < hi:
            return out
        direct = cast_to(nl, s, res)
        return nl.select_pos(nl.add(word, nl.const(1 - hi, 0)), direct, out)  # m >= hi

    return [map_sigs(ins[0], one)]
