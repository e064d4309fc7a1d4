"""HLS emitters for :mod:`lightspeed.ops.norm`: LayerNorm and RMSNorm, one row at a time.

ap_fixed arithmetic is exact until a cast, so the contract's exact sums and
products are plain C++ expressions held in types wide enough for their bounds;
each contract cast is a cast to the role's typedef. The inverse square root
normalizes the raw variance word with the same greedy chain of even shifts as
the RTL (:func:`lightspeed.firmware.verilog.emit_norm.shift_stages`), reads the
ROM (``inv_sqrt_table`` via the quantized params) and shifts the entry back.
"""

from __future__ import annotations

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, ctype
from lightspeed.fixed import FixedType
from lightspeed.ops.base import exact_capped
from lightspeed.ops.norm import check_var_type, eps_int, recip, table_bits_log2


def _stages(width: int) -> list[int]:
    from lightspeed.firmware.verilog.emit_norm import shift_stages

    return shift_stages(width)


def _sum_type(t: FixedType, n: int, square: bool = False) -> FixedType:
    """An exact type for the sum of n values of type t (or of their squares)."""
    if square:
        m = max(abs(t.min_int), abs(t.max_int))
        return exact_capped(0, n * m * m, 2 * t.frac)
    return exact_capped(n * min(t.min_int, 0), n * max(t.max_int, 0), t.frac)


@register("layernorm")
@register("rmsnorm")
def emit_norm(ctx: EmitContext) -> list[str]:
    w, p, prec, role, qp = ctx.w, ctx.name, ctx.prec, ctx.role, ctx.qparams
    n = int(ctx.in_shapes[0][-1])
    rows = ctx.n_out // n
    vt, tt = prec["var"], prec["table"]
    check_var_type(ctx.node, vt)
    bits = table_bits_log2(ctx.node)
    rc, r = recip(n)
    rc_t = FixedType(rc.bit_length() + 1, rc.bit_length() + 1 - r, False)
    w.array(f"{p}_rsqrt", role["table"], [cnum(v, tt) for v in qp["table"].flat], (1 << bits,))
    if "weight" in qp:
        w.array(f"{p}_gamma", role["weight"], [cnum(v, prec["weight"]) for v in qp["weight"]], (n,))
    if "bias" in qp:
        w.array(f"{p}_beta", role["bias"], [cnum(v, prec["bias"]) for v in qp["bias"]], (n,))
    x_t = ctx.in_types[0]
    d_t = prec["accum"] if ctx.node.op == "layernorm" else x_t
    d_c = role["accum"] if ctx.node.op == "layernorm" else ctx.in_ctypes[0]
    s1_t, s2_t = ctype(_sum_type(x_t, n)), ctype(_sum_type(d_t, n, square=True))
    vw, half = vt.width, vt.integer // 2
    e_w = tt.width + vw // 2 + 1
    e_fixed = FixedType(e_w, e_w - (tt.frac + half), False)
    lines = [
        f"  const {ctype(rc_t)} recip = {cnum(rc, rc_t)};",
        f"  for (int r = 0; r < {rows}; r++) {{",
        "    #pragma HLS UNROLL",
        f"    {d_c} d[{n}];",
    ]
    if ctx.node.op == "layernorm":
        lines += [
            f"    {s1_t} s1 = 0;",
            f"    for (int i = 0; i < {n}; i++) s1 += x[r * {n} + i];",
            f"    {role['accum']} mean = ({role['accum']})(s1 * recip);",
            f"    for (int i = 0; i < {n}; i++) d[i] = ({role['accum']})(x[r * {n} + i] - mean);",
        ]
    else:
        lines.append(f"    for (int i = 0; i < {n}; i++) d[i] = x[r * {n} + i];")
    eps = eps_int(ctx.node, vt)
    lines += [
        f"    {s2_t} s2 = 0;",
        f"    for (int i = 0; i < {n}; i++) s2 += d[i] * d[i];",
        f"    {role['var']} v = ({role['var']})(s2 * recip"
        + (f" + ({role['var']}){cnum(eps, vt)}" if eps else "")
        + ");",
        f"    ap_uint<{vw}> u = v.range({vw - 1}, 0);",
        "    if (u == 0) u = 1;  // the variance is at least one lsb",
        f"    ap_uint<{e_w}> shift_half = 0;",
    ]
    for k in _stages(vw):
        if k >= vw:
            continue
        lines.append(
            f"    if (u < (ap_uint<{vw + 1}>(1) << {vw - k})) {{ u = u << {k}; "
            f"shift_half += {k // 2}; }}"
        )
    idx = f"(u >> {vw - bits})" if vw >= bits else f"(ap_uint<{bits}>(u) << {bits - vw})"
    lines += [
        f"    {role['table']} entry = {p}_rsqrt[{idx}.to_int()];",
        f"    ap_uint<{e_w}> e = entry.range({tt.width - 1}, 0);",
        "    e = e << shift_half.to_int();",
        f"    {ctype(e_fixed)} e_fx;",
        "    e_fx.range() = e;",
        f"    {role['inv']} inv = ({role['inv']})e_fx;",
        f"    for (int i = 0; i < {n}; i++) {{",
        "      #pragma HLS UNROLL",
        f"      {role['norm']} z = ({role['norm']})(d[i] * inv);",
    ]
    expr = "z" + (f" * {p}_gamma[i]" if "weight" in qp else "")
    expr += f" + {p}_beta[i]" if "bias" in qp else ""
    lines += [f"      y[r * {n} + i] = ({ctx.out_ctype})({expr});", "    }", "  }"]
    return lines
