"""Quantize a float graph: parse the policy once, calibrate, then :func:`type_graph`.

Order of precedence for a node's role type is documented in
:mod:`lightspeed.quantize.type_graph`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lightspeed.errors import ConfigError, InputError
from lightspeed.fixed import FixedType
from lightspeed.ir.graph import Graph
from lightspeed.ir.shapes import infer_shapes
from lightspeed.ops import AutoOptions
from lightspeed.quantize.config import PrecisionConfig, check_against, config_type, make_config
from lightspeed.quantize.model import QuantizedModel
from lightspeed.quantize.type_graph import type_graph


def calibration_ranges(
    graph: Graph, data: Mapping[str, np.ndarray]
) -> dict[str, tuple[float, float]]:
    """(min, max) of every tensor of the float model over the calibration batch."""
    from lightspeed.emulate import run_float

    env = run_float(graph, data, keep_all=True)
    return {
        t: (float(np.min(v)), float(np.max(v))) if v.size else (0.0, 0.0) for t, v in env.items()
    }


def quantize(
    graph: Graph,
    precision: str | FixedType = "auto",
    calibration: np.ndarray | Mapping[str, np.ndarray] | None = None,
    config: dict[str, Any] | str | PrecisionConfig | None = None,
    options: AutoOptions | None = None,
    input_types: Mapping[str, str | FixedType] | None = None,
) -> QuantizedModel:
    """Turn a float graph into a fixed-point :class:`QuantizedModel`.

    ``precision`` is ``"auto"``, ``"trained"`` (keep a QAT/QONNX model's own
    types, round nowhere else) or one type for every role (hls4ml's
    ``granularity='model'``); ``config`` adds per-input/per-layer overrides;
    ``input_types`` gives graph inputs their types (the trained mode's way
    to type an input no ``Quant`` reads); ``calibration`` is sample input
    data (required for auto precision and for the report's float-vs-fixed
    error). ``"search"`` is run by :func:`lightspeed.quantize` (the top-level
    function), which needs torch.
    """
    from lightspeed.emulate import as_input_dict, check_inputs

    cfg = config if isinstance(config, PrecisionConfig) else make_config(precision, config, options)
    for name, t in (input_types or {}).items():
        cfg.inputs[name] = config_type(t, f"input type of {name!r}")
    if cfg.mode == "search":
        raise ConfigError(
            "precision='search' trains QAT models; call lightspeed.quantize(graph, "
            "precision='search', calibration=X) (needs torch), not lightspeed.quantize.ptq"
        )
    graph = graph.copy()
    check_against(cfg, graph)
    for layer, attrs in cfg.attrs.items():
        graph.node(layer).attrs.update(attrs)
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
    q = type_graph(graph, cfg, ranges)
    if cal is not None:
        q.stats = q.evaluate(cal)
    return q


def from_trained(
    graph: Graph, input_types: Mapping[str, str | FixedType] | None = None
) -> QuantizedModel:
    """``quantize(graph, "trained")``: the model's own types, exact everywhere else."""
    return quantize(graph, "trained", input_types=input_types)
