"""Complete the types of a model trained with quantization (QONNX from Brevitas/QKeras/HGQ).

A QAT model fixes the weight, bias and activation types; everything in
between is exact in the training framework (float accumulation of exact
products, ReLU on exact values). :func:`from_trained` types the rest so that
nothing is ever rounded twice:

* a graph input read only by a ``quant`` node gets that node's type (the
  framework quantizes the raw float input once);
* a multiply-accumulate node (dense/conv/batchnorm) gets an exact accumulator
  by interval analysis over its input type, and, unless trained, a result
  equal to the accumulator;
* ReLU/clip/max-pool/reshape keep their input's step (exact);
* ``quant`` nodes cast to their trained type.

Ops whose fixed semantics cannot be exact without calibration (tables:
sigmoid/tanh/softmax; average pooling by non powers of two) are refused
with the node's name, since a silent approximation would break bit-exactness.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lightspeed.errors import ConfigError, UnsupportedOpError
from lightspeed.fixed import FixedType, parse_type
from lightspeed.ir.graph import Graph
from lightspeed.ops import AutoOptions, get_op
from lightspeed.ops.conv import weight_matrix
from lightspeed.ops.mac import linear_precision
from lightspeed.quantize.model import QuantizedModel

_PASS = ("flatten", "reshape", "transpose")


def _relu_type(t: FixedType) -> FixedType:
    if not t.signed:
        return t
    return FixedType(max(t.width - 1, 1), t.integer - 1, False, t.rounding, t.overflow)


def _mac_matrix(node) -> tuple[np.ndarray, np.ndarray | None]:
    p = node.params
    if node.op == "dense":
        return p["weight"], p.get("bias")
    if node.op == "conv":
        g = int(node.attrs.get("group", 1))
        return np.concatenate([weight_matrix(p["weight"], g, i) for i in range(g)], axis=1), p.get(
            "bias"
        )
    return p["scale"][None, :], p["shift"]  # batchnorm


def from_trained(
    graph: Graph, input_types: Mapping[str, str | FixedType] | None = None
) -> QuantizedModel:
    """A :class:`QuantizedModel` honouring every trained type and rounding nowhere else.

    ``input_types`` overrides the types of graph inputs (else taken from a
    ``quant`` node that reads the input).
    """
    from lightspeed.ir import infer_shapes

    graph = graph.copy()
    infer_shapes(graph)
    types: dict[str, FixedType] = {k: parse_type(v) for k, v in (input_types or {}).items()}
    for name in graph.inputs:
        if name in types:
            continue
        users = graph.consumers(name)
        if users and all(u.op == "quant" for u in users):
            types[name] = parse_type(users[0].attrs["type"])
        else:
            raise ConfigError(
                f"input {name!r} has no trained type (no QONNX Quant reads it); pass "
                "input_types={name: 'ap_fixed<W,I>'}"
            )
    precision: dict[str, dict[str, FixedType]] = {}
    qparams = {}
    for node in graph.nodes:
        op = get_op(node.op)
        trained = {r: parse_type(t) for r, t in (node.attrs.get("precision") or {}).items()}
        if not node.inputs:
            raise UnsupportedOpError(
                f"node {node.name!r} has no inputs; constants are not supported here"
            )
        x_t = types[node.inputs[0]]
        if node.op in ("dense", "conv", "batchnorm"):
            w, b = _mac_matrix(node)
            missing = [
                r
                for r in ("weight", "bias")
                if r not in trained and (r == "weight" or b is not None)
            ]
            if missing:
                raise ConfigError(
                    f"node {node.name!r}: no trained type for {missing}; it was not quantized in training"
                )
            fixed = dict(trained)
            fixed.setdefault("result", FixedType(1, 1))
            prec = linear_precision(w, b, x_t, fixed, AutoOptions(), (0.0, 0.0))
            if "result" not in trained:
                prec["result"] = prec["accum"]
        elif node.op == "quant":
            prec = {"result": trained.get("result", parse_type(node.attrs["type"]))}
        elif node.op == "relu":
            prec = {"result": trained.get("result", _relu_type(x_t))}
        elif node.op in ("clip", "maxpool"):
            prec = {"result": trained.get("result", x_t)}
        elif node.op in _PASS:
            prec = {}
        else:
            raise UnsupportedOpError(
                f"node {node.name!r} ({node.op}) has no exact type from training; quantize it with "
                "lightspeed.quantize(..., calibration=...) instead, or add a Quant after it in training"
            )
        precision[node.name] = prec
        qparams[node.name] = op.quantize_params(node, prec)
        for t in node.outputs:
            types[t] = prec.get("result", x_t)
    return QuantizedModel(
        graph=graph, input_types={n: types[n] for n in graph.inputs}, precision=precision,
        qparams=qparams, tensor_types=types, default="trained",
    )  # fmt: skip
