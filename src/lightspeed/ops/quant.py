"""Quant: an explicit cast to a fixed-point type (QONNX ``Quant`` on activations).

The importer translates a power-of-two-scale, zero-offset QONNX ``Quant`` into
this op with ``attrs["type"]``; float semantics fake-quantize to that type, so
the float and fixed models agree exactly on these tensors.
"""

from __future__ import annotations

import numpy as np

from lightspeed.fixed import parse_type, quantize_float, requantize, to_float
from lightspeed.ir.graph import Node
from lightspeed.ops.base import AutoContext, Fx, Op, Precision, QParams, merge, same_shape


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    t = parse_type(node.attrs["type"])
    return [to_float(quantize_float(xs[0], t, what=f"{node.name} input"), t)]


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    return [Fx(requantize(x.m, x.t.frac, prec["result"]), prec["result"])]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    return merge(ctx.fixed, {"result": parse_type(node.attrs["type"])})


QUANT = Op(
    fusable=True,
    name="quant",
    roles=("result",),
    infer_shape=same_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    doc="cast to attrs['type'] (from QONNX Quant); fake-quantizes in the float model",
)
