"""Post-training quantization: calibrate ranges, then type every tensor.

Order of precedence for a node's role type: user layer config > trained
precision from the importer (``node.attrs["precision"]``, e.g. QONNX) >
explicit default type > automatic choice by the op's ``auto_precision``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lightspeed.errors import ConfigError, InputError
from lightspeed.fixed import FixedType, parse_type
from lightspeed.ir.graph import Graph
from lightspeed.ops import AutoContext, AutoOptions, get_op
from lightspeed.ops.base import result_type
from lightspeed.quantize.config import PrecisionConfig, check_against, make_config
from lightspeed.quantize.model import QuantizedModel


def calibration_ranges(
    graph: Graph, data: Mapping[str, np.ndarray]
) -> dict[str, tuple[float, float]]:
    """(min, max) of every tensor of the float model over the calibration batch."""
    from lightspeed.emulate import run_float

    env = run_float(graph, data, keep_all=True)
    return {
        t: (float(np.min(v)), float(np.max(v))) if v.size else (0.0, 0.0) for t, v in env.items()
    }


def _pinned(node, cfg: PrecisionConfig) -> dict[str, FixedType]:
    op = get_op(node.op)
    pinned: dict[str, FixedType] = {}
    if cfg.default is not None:
        pinned = {role: cfg.default for role in op.roles}
    trained = node.attrs.get("precision") or {}
    pinned.update({role: parse_type(t) for role, t in trained.items()})
    pinned.update(cfg.layers.get(node.name, {}))
    return pinned


def _trained_input_type(graph: Graph, name: str) -> FixedType | None:
    """An input read only by ``quant`` nodes of one type (a QONNX Quant) takes that type."""
    users = graph.consumers(name)
    kinds = {str(n.attrs.get("type")) for n in users}
    if users and all(n.op == "quant" for n in users) and len(kinds) == 1:
        return parse_type(kinds.pop())
    return None


def quantize(
    graph: Graph,
    precision: str | FixedType = "auto",
    calibration: np.ndarray | Mapping[str, np.ndarray] | None = None,
    config: dict[str, Any] | str | None = None,
    options: AutoOptions | None = None,
) -> QuantizedModel:
    """Turn a float graph into a fixed-point :class:`QuantizedModel`.

    ``precision`` is ``"auto"`` or one type for every role (hls4ml's
    ``granularity='model'``); ``config`` adds per-input/per-layer overrides;
    ``calibration`` is sample input data (required for auto precision and for
    the report's float-vs-fixed error).
    """
    from lightspeed.emulate import as_input_dict, check_inputs

    if precision == "trained":
        return _quantize_trained(graph, calibration, config)
    cfg = make_config(precision, config, options)
    graph = graph.copy()
    check_against(cfg, graph)
    for layer, attrs in cfg.attrs.items():
        graph.node(layer).attrs.update(attrs)
    from lightspeed.ir import infer_shapes

    infer_shapes(graph)

    cal = None
    if calibration is not None:
        try:
            cal = check_inputs(graph, as_input_dict(graph, calibration))
        except InputError as exc:
            raise InputError(f"calibration data: {exc}") from None
        if next(iter(cal.values())).shape[0] == 0:
            raise InputError("calibration data is empty; give at least one sample")
    elif cfg.is_auto:
        raise ConfigError(
            "auto precision needs calibration data to size results: pass calibration=X "
            "(CLI: --calibration DATA.npy) or an explicit --precision TYPE"
        )
    ranges = calibration_ranges(graph, cal) if cal is not None else {}
    opts = cfg.auto

    types: dict[str, FixedType] = {}
    for name in graph.inputs:
        if name in cfg.inputs:
            types[name] = cfg.inputs[name]
        elif (trained := _trained_input_type(graph, name)) is not None:
            types[name] = trained
        elif cfg.default is not None:
            types[name] = cfg.default
        else:
            lo, hi = ranges[name]
            types[name] = result_type(lo, hi, opts)
    input_types = {n: types[n] for n in graph.inputs}

    precision_map: dict[str, dict[str, FixedType]] = {}
    qparams: dict[str, dict[str, np.ndarray]] = {}
    for node in graph.nodes:
        op = get_op(node.op)
        in_types = [types[t] for t in node.inputs]
        pinned = _pinned(node, cfg)
        if all(r in pinned for r in op.roles):
            prec = {r: pinned[r] for r in op.roles}
        else:
            out_ranges = [ranges.get(t, (0.0, 0.0)) for t in node.outputs]
            ctx = AutoContext(in_types, out_ranges, pinned, opts, node.params)
            prec = op.auto_precision(node, ctx)
        # a dense/conv without a bias has no bias type
        missing = [
            r
            for r in op.roles
            if r not in prec and (r != "bias" or "bias" in node.params or node.op == "batchnorm")
        ]
        if missing:
            raise ConfigError(f"layer {node.name!r}: no type for roles {missing}")
        precision_map[node.name] = prec
        qparams[node.name] = op.quantize_params(node, prec)
        if "result" in prec:
            out_t = prec["result"]
        elif in_types:
            out_t = in_types[0]  # data movement keeps its input's type
        else:
            raise ConfigError(f"layer {node.name!r} has neither inputs nor a result type")
        for t in node.outputs:
            types[t] = out_t

    q = QuantizedModel(
        graph=graph,
        input_types=input_types,
        precision=precision_map,
        qparams=qparams,
        tensor_types=types,
        options=opts,
        default=None if cfg.default is None else str(cfg.default),
        calibration_ranges=ranges,
    )
    if cal is not None:
        q.stats = q.evaluate(cal)
    return q


def _quantize_trained(graph: Graph, calibration, config) -> QuantizedModel:
    """``precision="trained"``: keep a QAT/QONNX model's own types, round nowhere else."""
    from lightspeed.emulate import as_input_dict, check_inputs
    from lightspeed.quantize.trained import from_trained

    if config is not None:
        raise ConfigError("precision='trained' uses the model's own types; drop the config")
    q = from_trained(graph)
    if calibration is not None:
        try:
            cal = check_inputs(q.graph, as_input_dict(q.graph, calibration))
        except InputError as exc:
            raise InputError(f"calibration data: {exc}") from None
        q.calibration_ranges = calibration_ranges(q.graph, cal)
        q.stats = q.evaluate(cal)
    return q
