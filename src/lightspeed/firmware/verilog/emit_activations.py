"""Emitters for :mod:`lightspeed.ops.activations`: ReLU, Clip, LeakyReLU (fused into the stage before)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.netlist import Sig
from lightspeed.firmware.verilog.arith import cast_to, const_product, map_sigs, product_sig
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.activations import clip_int_bounds


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
