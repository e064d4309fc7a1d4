"""Operators: one module per family, each exporting :class:`~lightspeed.ops.base.Op` records.

To add an op: write its module here, add it to ``OPS`` below, and add one
emitter per backend (``firmware/verilog``, ``firmware/hls``).
"""

from __future__ import annotations

from lightspeed.errors import UnsupportedOpError
from lightspeed.ops.activations import CLIP, LEAKY_RELU, RELU
from lightspeed.ops.base import AutoContext, AutoOptions, Cost, CostContext, Fx, Op, Precision
from lightspeed.ops.conv import CONV
from lightspeed.ops.dense import DENSE
from lightspeed.ops.elementwise import ADD, CONCAT, MUL
from lightspeed.ops.pooling import AVGPOOL, GLOBAL_AVGPOOL, MAXPOOL
from lightspeed.ops.quant import QUANT
from lightspeed.ops.reshape import FLATTEN, RESHAPE, TRANSPOSE
from lightspeed.ops.scale import BATCHNORM
from lightspeed.ops.tables import SIGMOID, SOFTMAX, TANH
from lightspeed.ops.trees import TREE_ENSEMBLE

OPS: dict[str, Op] = {
    op.name: op
    for op in (
        DENSE, CONV, BATCHNORM, RELU, LEAKY_RELU, CLIP, SIGMOID, TANH, SOFTMAX,
        ADD, MUL, CONCAT, MAXPOOL, AVGPOOL, GLOBAL_AVGPOOL, FLATTEN, RESHAPE, TRANSPOSE, QUANT,
        TREE_ENSEMBLE,
    )
}  # fmt: skip


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise UnsupportedOpError(
            f"no lightspeed op {name!r}; supported ops: {', '.join(sorted(OPS))}"
        ) from None


__all__ = [
    "OPS",
    "AutoContext",
    "AutoOptions",
    "Cost",
    "CostContext",
    "Fx",
    "Op",
    "Precision",
    "get_op",
]
