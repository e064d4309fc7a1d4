"""HLS emitters for :mod:`lightspeed.ops.tables`: Sigmoid, Tanh and Softmax as ROM look-ups.

Addresses follow the index rule of :mod:`lightspeed.ops.tables` through the
``table_index`` helper of the generated C++; the table geometry (range,
sizes, steps) comes from ``table_geometry`` and ``softmax_geometry``, never
from the node's attributes directly.
"""

from __future__ import annotations

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, ctype, elementwise, raw_type
from lightspeed.fixed import FixedType
from lightspeed.ops.tables import softmax_geometry, table_geometry, table_layout


def table_lookup(
    ctx: EmitContext, lo: float, size: int, step_log2: int, to_zero: bool = False
) -> str:
    """Write the node's one-input ROM ``{name}_table``; the C++ expression reading it at ``x[i]``.

    The index rule is :func:`lightspeed.ops.tables.bin_index` (``table_index`` in the header).
    """
    p, t_in, tt = ctx.name, ctx.in_types[0], ctx.prec["table"]
    ctx.w.array(
        f"{p}_table", ctx.role["table"], [cnum(v, tt) for v in ctx.qparams["table"].flat], (size,)
    )
    return (
        f"({ctx.out_ctype}){p}_table[table_index<{raw_type(t_in)}>(x[i], {-step_log2 - t_in.frac}, "
        f"{round(lo * 2.0**-step_log2)}, {size}{', true' if to_zero else ''})]"
    )


@register("sigmoid")
@register("tanh")
def emit_unary_table(ctx: EmitContext) -> list[str]:
    lo, _, size, step_log2 = table_geometry(ctx.node)
    to_zero = table_layout(ctx.node) == "hls4ml"
    return elementwise(ctx.n_out, table_lookup(ctx, lo, size, step_log2, to_zero))


@register("softmax")
def emit_softmax(ctx: EmitContext) -> list[str]:
    w, p, prec, role, qp = ctx.w, ctx.name, ctx.prec, ctx.role, ctx.qparams
    t_in = ctx.in_types[0]
    n = ctx.in_shapes[0][-1]
    rows = ctx.n_out // n
    r, es, e_step, isz, i_step = softmax_geometry(ctx.node, n)
    et, acc, inv = prec["exp_table"], prec["accum"], prec["inv_table"]
    w.array(f"{p}_exp", role["exp_table"], [cnum(v, et) for v in qp["exp_table"].flat], (es,))
    w.array(f"{p}_inv", role["inv_table"], [cnum(v, inv) for v in qp["inv_table"].flat], (isz,))
    d_t = FixedType(t_in.width + 1, t_in.integer + 1, True)
    sum_bits = max(n - 1, 1).bit_length() + 1
    s_t = FixedType(et.width + sum_bits, et.integer + sum_bits, et.signed)
    return [
        f"  for (int r = 0; r < {rows}; r++) {{",
        "    #pragma HLS UNROLL",
        f"    {ctx.in_ctypes[0]} mx = x[r * {n}];",
        f"    for (int i = 1; i < {n}; i++) {{",
        "      #pragma HLS UNROLL",
        f"      if (x[r * {n} + i] > mx) mx = x[r * {n} + i];",
        "    }",
        f"    {role['exp_table']} e[{n}];",
        f"    {ctype(s_t)} s = 0;",
        f"    for (int i = 0; i < {n}; i++) {{",
        "      #pragma HLS UNROLL",
        f"      {ctype(d_t)} d = x[r * {n} + i] - mx;",
        f"      e[i] = {p}_exp[table_index<{raw_type(d_t)}>(d, {-e_step - d_t.frac}, "
        f"{round(-r * 2.0**-e_step)}, {es})];",
        "      s += e[i];",
        "    }",
        f"    {role['accum']} sa = ({role['accum']})s;",
        f"    {role['inv_table']} inv = {p}_inv[table_index<{raw_type(acc)}>(sa, {-i_step - acc.frac}, 0, {isz})];",
        f"    for (int i = 0; i < {n}; i++) {{",
        "      #pragma HLS UNROLL",
        f"      y[r * {n} + i] = ({ctx.out_ctype})(e[i] * inv);",
        "    }",
        "  }",
    ]
