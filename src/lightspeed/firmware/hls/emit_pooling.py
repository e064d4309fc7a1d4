"""HLS emitters for :mod:`lightspeed.ops.pooling`: max-pool, average pools over window index tables.

``-1`` in a window table marks padding: skipped by max-pool, a zero for the
average pools (``count_include_pad``), whose sum is multiplied by ``recip(K)``.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, ctype, flat_size
from lightspeed.fixed import FixedType
from lightspeed.ops.pooling import pool_attrs, recip, windows


def _window_table(ctx: EmitContext) -> int:
    """Write the window index table of the node; returns the window size K."""
    xshape = ctx.in_shapes[0]
    flat_idx = np.arange(flat_size(xshape)).reshape(xshape)
    win = windows(flat_idx[None].astype(np.int64), ctx.node, -1)[0]  # (C, *O, K), -1 = padding
    ctx.w.int_table(f"{ctx.name}_idx", win.reshape(-1))
    return win.shape[-1]


@register("maxpool")
def emit_maxpool(ctx: EmitContext) -> list[str]:
    k = _window_table(ctx)
    return [
        f"  for (int o = 0; o < {ctx.n_out}; o++) {{",
        "    #pragma HLS UNROLL",
        f"    {ctx.in_ctypes[0]} m = 0; bool any = false;",
        f"    for (int j = 0; j < {k}; j++) {{",
        "      #pragma HLS UNROLL",
        f"      const int i = {ctx.name}_idx[o * {k} + j];",
        "      if (i >= 0 && (!any || x[i] > m)) { m = x[i]; any = true; }",
        "    }",
        f"    y[o] = ({ctx.out_ctype})m;",
        "  }",
    ]


@register("avgpool")
@register("global_avgpool")
def emit_avgpool(ctx: EmitContext) -> list[str]:
    k = _window_table(ctx)
    t_in = ctx.in_types[0]
    kk = int(np.prod(pool_attrs(ctx.node, ctx.in_shapes[0])[0]))
    r, rfrac = recip(kk)
    bits = kk.bit_length() + 1
    s_t = FixedType(t_in.width + bits, t_in.integer + bits, True)
    r_t = FixedType(max(r.bit_length(), 1), max(r.bit_length(), 1) - rfrac, False)
    return [
        f"  const {ctype(r_t)} rc = {cnum(r, r_t)};",
        f"  for (int o = 0; o < {ctx.n_out}; o++) {{",
        "    #pragma HLS UNROLL",
        f"    {ctype(s_t)} s = 0;",
        f"    for (int j = 0; j < {k}; j++) {{",
        "      #pragma HLS UNROLL",
        f"      const int i = {ctx.name}_idx[o * {k} + j];",
        "      if (i >= 0) s += x[i];",
        "    }",
        f"    y[o] = ({ctx.out_ctype})(s * rc);",
        "  }",
    ]
