"""The user-facing entry points behind ``lightspeed.load`` and ``lightspeed.quantize``.

``quantize`` accepts every precision mode the CLI accepts: ``"auto"``, one
type, ``"trained"`` and ``"search"`` (per-layer widths by greedy search with
quantization-aware fine-tuning; needs torch). The mode is parsed once, by
:func:`lightspeed.quantize.make_config`, from the argument or the config file.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lightspeed.fixed import FixedType
from lightspeed.ir import Graph
from lightspeed.ops import AutoOptions
from lightspeed.quantize import QuantizedModel, make_config
from lightspeed.quantize import quantize as _quantize_typed


def load(source: Any, input_shape: Any = None, weights: Any = None) -> Graph:
    """Import a model (ONNX/QONNX path or ModelProto, Keras/QKeras file or model, torch
    ``nn.Module``, tree ensemble).

    ``input_shape`` (without the batch axis) is needed for dynamic shapes and
    for PyTorch modules; ``weights`` is the weights ``.h5`` of a Keras JSON
    architecture.
    """
    from lightspeed.frontends import load_model

    return load_model(source, input_shape=input_shape, weights=weights)


def quantize(
    graph: Graph,
    precision: str | FixedType = "auto",
    calibration: np.ndarray | Mapping[str, np.ndarray] | None = None,
    config: dict[str, Any] | str | None = None,
    options: AutoOptions | None = None,
    *,
    input_types: Mapping[str, str | FixedType] | None = None,
    labels: np.ndarray | None = None,
    budget: float = 0.01,
    search_cost: str = "bops",
    progress: Callable[[str], None] | None = None,
) -> QuantizedModel:
    """Turn a float graph into a fixed-point :class:`QuantizedModel` under any precision mode.

    ``labels``, ``budget`` (allowed relative accuracy loss), ``search_cost``
    (``"bops"`` or ``"lut"``) and ``progress`` are for ``precision="search"``,
    whose summary lands in ``q.stats["search"]``; see
    :func:`lightspeed.quantize.quantize` for the rest.
    """
    cfg = make_config(precision, config, options)
    if cfg.mode != "search":
        return _quantize_typed(graph, calibration=calibration, config=cfg, input_types=input_types)
    if input_types:
        from lightspeed.errors import ConfigError

        raise ConfigError(
            "input types (--input-type, input_types=) do not apply to precision='search', which "
            "chooses the input widths itself; leave them out or use --precision trained/auto"
        )
    from lightspeed.search import search_graph

    res = search_graph(
        graph, calibration, labels=labels, budget=budget, cost=search_cost, progress=progress
    )
    if not res.met_goal:
        warnings.warn(
            f"the search kept {res.accuracy / res.float_accuracy:.1%} of float accuracy, short of "
            f"{1 - budget:.1%}; standardise the inputs or allow a larger --budget",
            stacklevel=2,
        )
    res.quantized.stats["search"] = res.summary()
    return res.quantized
