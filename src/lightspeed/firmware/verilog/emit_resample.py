"""Emitter for :mod:`lightspeed.ops.resample`: linear upsampling as constant-weight adder trees.

Each output is the exact sum of its (at most 2**d) input signals times integer
weights at ``d * f`` fractional bits, cast to the result type.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import cast_to
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.resample import exact_accum, taps


@register("resize_linear")
def emit_resize_linear(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x = ins[0]
    f = ctx.prec["weight"].frac
    ind, wts = taps(ctx.node, x.shape, f)
    exact = exact_accum(ctx.node, ctx.in_types[0], x.shape, f)
    wf = exact.frac - ctx.in_types[0].frac  # d * f
    pinned = ctx.prec["accum"] != exact
    flat = x.reshape(-1)
    out = np.empty(len(ind), dtype=object)
    for o in range(len(ind)):
        terms = [(ctx.nl.mulc(flat[i], int(w), wf), False)
                 for i, w in zip(ind[o], wts[o], strict=True) if w]  # fmt: skip
        acc = ctx.nl.sum(terms)
        if pinned:
            acc = cast_to(ctx.nl, acc, ctx.prec["accum"])
        out[o] = cast_to(ctx.nl, acc, ctx.prec["result"])
    scales = [int(s) for s in ctx.node.attrs["scales"]]
    return [out.reshape(tuple(n * s for n, s in zip(x.shape, scales, strict=True)))]
