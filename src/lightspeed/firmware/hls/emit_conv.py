"""HLS emitter for :mod:`lightspeed.ops.conv` (1D/2D, grouped): MAC loops over patch index tables.

The patch of every output position is an index table computed here in the
emulator's patch order (``-1`` marks zero padding, skipped by the MAC).
``conv_transpose`` is its equivalent conv over the zero-inserted input
(:func:`lightspeed.ops.conv.transpose_equivalent`): inserted zeros are padding.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.mac import mac_loop, weight_arrays
from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import flat_size
from lightspeed.ops.conv import (
    conv_attrs,
    equivalent_qparams,
    expand,
    patches,
    transpose_equivalent,
    weight_matrix,
)


@register("conv")
def emit_conv(ctx: EmitContext) -> list[str]:
    xshape = ctx.in_shapes[0]
    flat_idx = np.arange(flat_size(xshape)).reshape(xshape) + 1  # 0 marks padding
    return _conv_lines(ctx, ctx.node, np.asarray(ctx.qparams["weight"]), flat_idx)


@register("conv_transpose")
def emit_conv_transpose(ctx: EmitContext) -> list[str]:
    xshape = ctx.in_shapes[0]
    flat_idx = np.arange(flat_size(xshape)).reshape(xshape) + 1  # 0 marks padding
    wq = equivalent_qparams(ctx.qparams, ctx.node)["weight"]
    return _conv_lines(ctx, transpose_equivalent(ctx.node), wq, expand(flat_idx[None], ctx.node)[0])


def _conv_lines(ctx: EmitContext, node, wq: np.ndarray, flat_idx: np.ndarray) -> list[str]:
    """The MAC loops of a conv whose input positions are ``flat_idx`` (1-based, 0 = zero)."""
    w, p, role = ctx.w, ctx.name, ctx.role
    group = conv_attrs(node)[4]
    cout, cin_g = wq.shape[0], wq.shape[1]
    cout_g = cout // group
    pt = patches(flat_idx[None], node)[0]  # (*O, *k, C): the emulator's patch order
    nd = wq.ndim - 2
    osz = flat_size(pt.shape[:nd])
    pt = pt.reshape(osz, *pt.shape[nd:])
    psz = cin_g * flat_size(wq.shape[2:])
    idx = (
        np.stack([pt[..., g * cin_g : (g + 1) * cin_g].reshape(osz, psz) for g in range(group)]) - 1
    )
    w.int_table(f"{p}_idx", idx)
    wmat = np.concatenate([weight_matrix(wq, group, g) for g in range(group)], axis=1)  # (P, Cout)
    bias = weight_arrays(ctx, wmat)
    return [
        f"  for (int co = 0; co < {cout}; co++) {{",
        "    #pragma HLS UNROLL",
        f"    const int g = co / {cout_g};",
        f"    for (int o = 0; o < {osz}; o++) {{",
        "      #pragma HLS UNROLL",
        *mac_loop(
            role["accum"],
            ctx.out_ctype,
            "x[i]",
            f"{p}_w[co][k]",
            f"y[co * {osz} + o]",
            bias=None if bias is None else f"{bias}[co]",
            loop=("k", psz),
            lookup=f"const int i = {p}_idx[(g * {osz} + o) * {psz} + k];",
            guard="i >= 0",
            indent=6,
        ),
        "    }",
        "  }",
    ]
