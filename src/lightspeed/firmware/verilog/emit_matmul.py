"""Emitter for :mod:`lightspeed.ops.matmul`: one MAC per output over signal x signal products."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.arith import Product, finish_mac, plan_products
from lightspeed.firmware.verilog.lowering import EmitContext, register


@register("matmul")
def emit_matmul(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    a, b = ins
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, (*lead, *a.shape[-2:]))
    b = np.broadcast_to(b, (*lead, *b.shape[-2:]))
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    nl, acc_t, res_t = ctx.nl, ctx.prec["accum"], ctx.prec["result"]
    out = np.empty((*lead, m, n), dtype=object)
    for idx in np.ndindex(*lead):
        for i in range(m):
            for j in range(n):
                products = []
                for t in range(k):
                    p = nl.mul(a[(*idx, i, t)], b[(*idx, t, j)])
                    products.append(Product([(p, False)], p.frac))
                out[(*idx, i, j)] = finish_mac(nl, plan_products(nl, products, 0, acc_t, res_t))
    return [out]
