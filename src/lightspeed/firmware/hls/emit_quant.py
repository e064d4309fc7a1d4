"""HLS emitter for :mod:`lightspeed.ops.quant`: a cast to the result type."""

from __future__ import annotations

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import elementwise


@register("quant")
def emit_quant(ctx: EmitContext) -> list[str]:
    return elementwise(ctx.n_out, f"({ctx.out_ctype})x[i]")


@register("fixed_quant")
def emit_fixed_quant(ctx: EmitContext) -> list[str]:
    """One loop per element type over an index table; pruned elements are 0."""
    from lightspeed.ops.quant import element_groups

    lines: list[str] = []
    for n, (t, idx) in enumerate(element_groups(ctx.node)):
        table = f"{ctx.name}_idx{n}"
        ctx.w.int_table(table, idx)
        value = "0" if t is None else f"({ctx.w.typedef(t, f'{ctx.node.name}_e{n}')})x[{table}[j]]"
        lines += [
            f"  for (int j = 0; j < {idx.size}; j++) {{",
            "    #pragma HLS UNROLL",
            f"    y[{table}[j]] = ({ctx.out_ctype}){value};",
            "  }",
        ]
    return lines
