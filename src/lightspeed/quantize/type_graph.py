"""One typing loop for every precision policy: :func:`type_graph`.

A node's role type comes from, in order of precedence: the user's layer
config > the source model's own types (``node.types``: QONNX ``Quant``,
lightspeed QAT export, a lightspeed QONNX export's metadata) > the policy's
one type (mode ``fixed``) > the op's typing rule:

* mode ``auto``: ``Op.auto_precision`` sizes what is left from the
  calibrated ranges (exact accumulators by interval analysis);
* mode ``trained``: ``Op.trained_precision`` completes the model's own types
  exactly from the input types, rounding nowhere else (lookup tables and
  average pooling: documented defaults); an op without that rule (tree
  ensembles) is refused with the node's name.

Graph inputs take the config's type (``--input-type``, ``inputs:``,
``input_types=``), else the type the model states (a QONNX datatype
annotation such as ``UINT8``), else the type of the ``quant`` nodes that
alone read them (a QONNX input ``Quant``), else the fixed type, else (auto)
the calibrated range.
"""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ConfigError, UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.ir.graph import Graph, Node, Shape
from lightspeed.ops import AutoContext, Precision, TrainedContext, get_op
from lightspeed.ops.base import result_type
from lightspeed.quantize.config import PrecisionConfig
from lightspeed.quantize.model import QuantizedModel


def trained_input_type(graph: Graph, name: str) -> FixedType | None:
    """An input read only by ``quant`` nodes of one type (a QONNX Quant) takes that type.

    An input read only by per-element casts (``fixed_quant``, HGQ2 input quantizers)
    takes the type from which they are exact (:func:`lightspeed.ops.quant.source_type`).
    """
    users = graph.consumers(name)
    if users and all(n.op == "fixed_quant" for n in users):
        from lightspeed.ops.quant import source_type

        return source_type(users)
    kinds = {n.types.get("result") for n in users}
    if users and all(n.op == "quant" for n in users) and len(kinds) == 1:
        return kinds.pop()
    return None


def _input_type(graph: Graph, name: str, cfg: PrecisionConfig, ranges) -> FixedType:
    if name in cfg.inputs:
        return cfg.inputs[name]
    if name in graph.input_types:
        return graph.input_types[name]
    if (trained := trained_input_type(graph, name)) is not None:
        return trained
    if cfg.default is not None:
        return cfg.default
    if cfg.mode == "trained":
        raise ConfigError(
            f"input {name!r} has no trained type (no QONNX Quant or datatype annotation types "
            f"it); give it on the command line (--input-type '{name}:ap_fixed<16,6>', "
            f"hls4ml's default), in the config file (inputs: {{{name}: 'ap_fixed<16,6>'}}) or "
            f"in Python (lightspeed.quantize(..., input_types={{{name!r}: 'ap_fixed<16,6>'}}))"
        )
    lo, hi = ranges[name]
    return result_type(lo, hi, cfg.auto)


def _needed(node: Node, roles: tuple[str, ...]) -> tuple[str, ...]:
    """The roles a node must have typed: a dense/conv without a bias has no bias type."""
    return tuple(r for r in roles if r != "bias" or "bias" in node.params or node.op == "batchnorm")


def pinned_roles(node: Node, cfg: PrecisionConfig) -> Precision:
    """Roles fixed before any rule runs: fixed type < the model's own types < the layer config."""
    op = get_op(node.op)
    pinned: Precision = {role: cfg.default for role in op.roles} if cfg.default else {}
    pinned.update(node.types)
    pinned.update(cfg.layers.get(node.name, {}))
    return pinned


def type_node(
    node: Node,
    in_types: list[FixedType],
    cfg: PrecisionConfig,
    ranges,
    shapes: dict[str, Shape] | None = None,
) -> Precision:
    """The precision of one node under ``cfg`` (see the module docstring)."""
    op = get_op(node.op)
    graph_shapes = shapes or {}
    pinned = pinned_roles(node, cfg)
    if cfg.mode == "trained" and not all(r in pinned for r in _needed(node, op.roles)):
        if not node.inputs:
            raise UnsupportedOpError(
                f"node {node.name!r} has no inputs; constants are not supported here"
            )
        if op.trained_precision is None:
            raise UnsupportedOpError(
                f"node {node.name!r} ({node.op}) has no exact type from training; quantize it with "
                "lightspeed.quantize(..., calibration=...) instead, or add a Quant after it in training"
            )
        in_shapes = [graph_shapes.get(t, ()) for t in node.inputs]
        prec = op.trained_precision(node, TrainedContext(in_types, pinned, in_shapes))
    elif all(r in pinned for r in _needed(node, op.roles)):
        prec = {r: pinned[r] for r in op.roles if r in pinned}
    else:
        out_ranges = [ranges.get(t, (0.0, 0.0)) for t in node.outputs]
        prec = op.auto_precision(
            node, AutoContext(in_types, out_ranges, pinned, cfg.auto, node.params)
        )
    missing = [r for r in _needed(node, op.roles) if r not in prec]
    if missing:
        raise ConfigError(f"layer {node.name!r}: no type for roles {missing}")
    return prec


def type_graph(
    graph: Graph,
    cfg: PrecisionConfig,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> QuantizedModel:
    """Type every tensor and role of ``graph`` (already shape-inferred) under ``cfg``."""
    ranges = ranges or {}
    types: dict[str, FixedType] = {
        name: _input_type(graph, name, cfg, ranges) for name in graph.inputs
    }
    precision: dict[str, Precision] = {}
    qparams: dict[str, dict[str, np.ndarray]] = {}
    for node in graph.nodes:
        op = get_op(node.op)
        in_types = [types[t] for t in node.inputs]
        prec = type_node(node, in_types, cfg, ranges, graph.shapes)
        precision[node.name] = prec
        qparams[node.name] = op.quantize_params(node, prec)
        if "result" in prec:
            out_t = prec["result"]
        elif in_types:
            out_t = in_types[0]  # data movement keeps its input's type
        else:
            raise ConfigError(f"layer {node.name!r} has neither inputs nor a result type")
        for t in node.outputs:
            types[t] = out_t
    return QuantizedModel(
        graph=graph, precision=precision, qparams=qparams, tensor_types=types,
        options=cfg.auto, default=cfg.label, calibration_ranges=dict(ranges),
    )  # fmt: skip
