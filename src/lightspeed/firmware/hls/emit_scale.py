"""HLS emitter for :mod:`lightspeed.ops.scale` (batchnorm): a one-term MAC per element."""

from __future__ import annotations

from lightspeed.firmware.hls.mac import mac_loop
from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import cnum, flat_size


@register("batchnorm")
def emit_batchnorm(ctx: EmitContext) -> list[str]:
    w, p, prec, role, qp = ctx.w, ctx.name, ctx.prec, ctx.role, ctx.qparams
    xshape = ctx.in_shapes[0]
    per_c = flat_size(xshape[1:]) if len(xshape) > 1 else 1
    c = xshape[0]
    w.array(f"{p}_s", role["weight"], [cnum(v, prec["weight"]) for v in qp["scale"].flat], (c,))
    w.array(f"{p}_b", role["bias"], [cnum(v, prec["bias"]) for v in qp["shift"].flat], (c,))
    return [
        f"  for (int i = 0; i < {ctx.n_out}; i++) {{",
        "    #pragma HLS UNROLL",
        f"    const int c = i / {per_c};",
        *mac_loop(
            role["accum"], ctx.out_ctype, "x[i]", f"{p}_s[c]", "y[i]", bias=f"{p}_b[c]", indent=4
        ),
        "  }",
    ]
