"""Emitter for :mod:`lightspeed.ops.conv` (1D/2D, grouped, io_parallel): one MAC per output.

``conv_transpose`` is emitted as its equivalent conv on the zero-inserted input
(:func:`lightspeed.ops.conv.transpose_equivalent`); inserted zeros are int 0
entries that the MAC skips, so they cost nothing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lightspeed.firmware.verilog.arith import finish_mac, plan_mac
from lightspeed.firmware.verilog.emit_dense import share
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.conv import (
    conv_attrs,
    equivalent_qparams,
    expand,
    patches,
    transpose_equivalent,
    weight_matrix,
)


def _sig_or_none(v):
    return v if not isinstance(v, int | np.integer) else None


@register("conv")
def emit_conv(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    node, p, q = ctx.node, ctx.prec, ctx.qparams
    w = q["weight"]
    bias = q.get("bias")
    group = conv_attrs(node)[4]
    cout_g, cin_g = w.shape[0] // group, w.shape[1]
    nd = w.ndim - 2
    # zero padding appears as int 0 entries: constant-zero inputs, skipped by the MAC
    pt = patches(ins[0][None], node)[0]  # (*O, *k, C)
    out_sp = pt.shape[:nd]
    y = np.empty((w.shape[0], *out_sp), dtype=object)
    for g in range(group):
        wm = weight_matrix(w, group, g)  # rows in (kernel..., channel) order, like hls4ml
        for o in np.ndindex(*out_sp):
            patch = pt[o][..., g * cin_g : (g + 1) * cin_g].reshape(-1)
            xs = [_sig_or_none(v) for v in patch]
            plans = [
                plan_mac(
                    ctx.nl,
                    xs,
                    wm[:, j],
                    p["weight"],
                    None if bias is None else bias[g * cout_g + j],
                    p.get("bias"),
                    p["accum"],
                    p["result"],
                    ctx.opts,
                )
                for j in range(cout_g)
            ]
            share(ctx, plans)  # one position's outputs share its patch
            for j, plan in enumerate(plans):
                y[(g * cout_g + j, *o)] = finish_mac(ctx.nl, plan)
    return [y]


@register("conv_transpose")
def emit_conv_transpose(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    eq = replace(
        ctx, node=transpose_equivalent(ctx.node), qparams=equivalent_qparams(ctx.qparams, ctx.node)
    )
    return emit_conv(eq, [expand(ins[0][None], ctx.node)[0]])
