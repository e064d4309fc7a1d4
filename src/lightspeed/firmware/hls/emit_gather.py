"""HLS emitters for :mod:`lightspeed.ops.gather`: gather_elements and scatter_add.

Offsets come from index tables: a constant index is a table of flat source
(gather) or target (scatter) positions; an index input adds ``idx * stride``
to the table's base offset of the element's line along the axis. scatter_add
sums into an exact accumulator array and casts each sum once.
"""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.hls.registry import EmitContext, register
from lightspeed.firmware.hls.writer import elementwise
from lightspeed.ops.base import exact_type
from lightspeed.ops.gather import targets


def _stride(shape: tuple[int, ...], axis: int) -> int:
    return int(np.prod(shape[axis + 1 :])) if axis + 1 < len(shape) else 1


def _bases(ishape: tuple[int, ...], shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Flat offset in a tensor of ``shape`` of element ``pos`` with the axis coordinate 0."""
    coords = list(np.indices(ishape))
    coords[axis] = np.zeros(ishape, dtype=np.int64)
    return np.ravel_multi_index(tuple(coords), shape).reshape(-1)


@register("gather_elements")
def emit_gather_elements(ctx: EmitContext) -> list[str]:
    axis = int(ctx.node.attrs["axis"])
    xshape = tuple(ctx.in_shapes[0])
    tab = f"{ctx.name}_src"
    if len(ctx.in_shapes) == 1:
        c = np.asarray(ctx.node.attrs["indices"], dtype=np.int64)
        src = _bases(c.shape, xshape, axis) + c.reshape(-1) * _stride(xshape, axis)
        ctx.w.int_table(tab, src)
        return elementwise(ctx.n_out, f"x[{tab}[i]]")
    ishape = tuple(ctx.in_shapes[1])
    ctx.w.int_table(tab, _bases(ishape, xshape, axis))
    return elementwise(ctx.n_out, f"x0[{tab}[i] + x1[i].to_int() * {_stride(xshape, axis)}]")


@register("scatter_add")
def emit_scatter_add(ctx: EmitContext) -> list[str]:
    node, t = ctx.node, ctx.in_types[0]
    k = int(node.attrs["count"])
    sum_t = ctx.w.typedef(
        exact_type(k * min(t.min_int, 0), k * max(t.max_int, 0), t.frac), f"{ctx.name}_sum"
    )
    shape = tuple(int(d) for d in node.attrs["shape"])
    axis = int(node.attrs["axis"])
    ushape = tuple(ctx.in_shapes[0])
    n_u = int(np.prod(ushape))
    tab = f"{ctx.name}_dst"
    if len(ctx.in_shapes) == 1:
        c = np.asarray(node.attrs["indices"], dtype=np.int64)
        ctx.w.int_table(tab, targets(node, c[None], ushape)[0])
        add = f"acc[{tab}[p]] += x[p];"
    else:
        ctx.w.int_table(tab, _bases(ushape, shape, axis))
        add = f"acc[{tab}[p] + x1[p].to_int() * {_stride(shape, axis)}] += x0[p];"
    return [
        f"  {sum_t} acc[{ctx.n_out}];",
        "  #pragma HLS ARRAY_PARTITION variable=acc complete",
        f"  for (int i = 0; i < {ctx.n_out}; i++) acc[i] = 0;",
        f"  for (int p = 0; p < {n_u}; p++) {{",
        "    #pragma HLS UNROLL",
        f"    {add}",
        "  }",
        *elementwise(ctx.n_out, f"({ctx.out_ctype})acc[i]"),
    ]
