"""Operators: one module per op family, each the single home of its ops.

An op module defines :class:`~lightspeed.ops.base.Op` records at module level
(shape rule, float and fixed-point semantics, automatic and trained typing,
cost, parameter roles, firmware hints, ONNX import handlers and QONNX
export). :mod:`lightspeed.ops.registry` discovers them; nothing else lists
ops. Firmware emitters mirror these modules by file name
(``firmware/verilog/emit_<family>.py``, ``firmware/hls/emit_<family>.py``).
"""

from __future__ import annotations

from lightspeed.ops.base import (
    AutoContext,
    AutoOptions,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    TrainedContext,
)
from lightspeed.ops.registry import all_ops, get_op, onnx_handlers

all_ops()  # import every op module now, as a plain package import would (no first-use stall)


def __getattr__(name: str):  # OPS stays importable as a read-only view of the registry
    if name == "OPS":
        return all_ops()
    raise AttributeError(name)


__all__ = [
    "OPS",
    "AutoContext",
    "AutoOptions",
    "Cost",
    "CostContext",
    "Fx",
    "Op",
    "Precision",
    "TrainedContext",
    "all_ops",
    "get_op",
    "onnx_handlers",
]
