"""Emitters for multiply-accumulate ops: dense, conv (1D/2D, io_parallel), batchnorm."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import mac
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.conv import conv_attrs, patches, weight_matrix


def _sig_or_none(v):
    return v if not isinstance(v, int | np.integer) else None


@register("dense")
def emit_dense(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    p, q = ctx.prec, ctx.qparams
    w = q["weight"]
    bias = q.get("bias")
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty((rows.shape[0], w.shape[1]), dtype=object)
    for r in range(rows.shape[0]):
        xs = list(rows[r])
        for j in range(w.shape[1]):
            out[r, j] = mac(
                ctx.nl,
                xs,
                w[:, j],
                p["weight"],
                None if bias is None else bias[j],
                p.get("bias"),
                p["accum"],
                p["result"],
                ctx.opts,
            )
    return [out.reshape(*lead, w.shape[1])]


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
            for j in range(cout_g):
                c = g * cout_g + j
                y[(c, *o)] = mac(
                    ctx.nl,
                    xs,
                    wm[:, j],
                    p["weight"],
                    None if bias is None else bias[c],
                    p.get("bias"),
                    p["accum"],
                    p["result"],
                    ctx.opts,
                )
    return [y]


@register("batchnorm")
def emit_batchnorm(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    p, q = ctx.prec, ctx.qparams
    scale, shift = q["scale"], q["shift"]
    y = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(*x.shape):
        c = idx[0]
        y[idx] = mac(
            ctx.nl,
            [x[idx]],  # type: ignore[list-item]
            np.array([scale[c]]),
            p["weight"],
            int(shift[c]),
            p["bias"],
            p["accum"],
            p["result"],
            ctx.opts,
        )
    return [y]
