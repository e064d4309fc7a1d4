"""The multiply-accumulate in C++, written once for dense, conv and batchnorm.

It spells out the contract of :mod:`lightspeed.ops.mac` literally::

    acc = (accum_t) bias
    for i in inputs: acc = (accum_t)(acc + (accum_t)(x[i] * w[i]))
    y = (result_t) acc

in input order, so ``ap_fixed`` makes the C simulation bit-exact with the emulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lightspeed.firmware.hls.registry import EmitContext


def mac_loop(
    acc_t: str,
    out_t: str,
    x: str,
    w: str,
    y: str,
    *,
    bias: str | None = None,
    loop: tuple[str, int] | None = None,
    lookup: str | None = None,
    guard: str | None = None,
    indent: int = 2,
) -> list[str]:
    """Lines computing ``y = (out_t) sum(x * w) + bias`` with accumulator type ``acc_t``.

    ``x``, ``w`` and ``y`` are C++ expressions (of the loop variable, if any);
    ``bias`` is None for an accumulator starting at zero. ``loop = (var, n)``
    unrolls over ``n`` terms (None: a single term); ``lookup`` is a statement
    run before each term (e.g. an index-table read) and ``guard`` a condition
    for the term to count (e.g. not zero padding).
    """
    pad = " " * indent
    init = f"({acc_t}){bias};" if bias is not None else "0;"
    step = f"acc = ({acc_t})(acc + ({acc_t})({x} * {w}));"
    if guard:
        step = f"if ({guard}) {step}"
    lines = [f"{pad}{acc_t} acc = {init}"]
    if loop is None:
        lines.append(f"{pad}{step}")
    else:
        var, n = loop
        lines += [
            f"{pad}for (int {var} = 0; {var} < {n}; {var}++) {{",
            f"{pad}  #pragma HLS UNROLL",
            *([f"{pad}  {lookup}"] if lookup else []),
            f"{pad}  {step}",
            f"{pad}}}",
        ]
    lines.append(f"{pad}{y} = ({out_t})acc;")
    return lines


def weight_arrays(ctx: EmitContext, wmat: np.ndarray) -> str | None:
    """Write the (fan_in, fan_out) weight matrix as ``{name}_w[out][in]`` and the bias.

    Returns the bias array's name, or None for a layer without bias.
    """
    from lightspeed.firmware.hls.writer import cnum

    w, p, prec, role = ctx.w, ctx.name, ctx.prec, ctx.role
    fan_out = wmat.shape[1]
    w.array(f"{p}_w", role["weight"], [cnum(v, prec["weight"]) for v in wmat.T.flat], wmat.T.shape)
    bias = ctx.qparams.get("bias")
    if bias is not None:
        w.array(f"{p}_b", role["bias"], [cnum(v, prec["bias"]) for v in bias.flat], (fan_out,))
        return f"{p}_b"
    return None
