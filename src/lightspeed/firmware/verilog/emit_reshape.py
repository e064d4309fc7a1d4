"""Emitters for :mod:`lightspeed.ops.reshape`: pure wiring (array moves, no logic, no register)."""

from __future__ import annotations

import numpy as np

from lightspeed.firmware.verilog.lowering import EmitContext, register


@register("flatten")
def emit_flatten(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    return [ins[0].reshape(-1)]


@register("reshape")
def emit_reshape(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    return [ins[0].reshape(*ctx.node.attrs["shape"])]


@register("transpose")
def emit_transpose(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    return [ins[0].transpose(*[int(p) for p in ctx.node.attrs["perm"]])]
