"""The bit-exact emulator: runs a quantized graph on a batch, node by node.

The fixed-point semantics of each op live in its module under
:mod:`lightspeed.ops`; this module only walks the graph (torch.fx-style
interpreter), validates inputs and optionally keeps every intermediate
tensor for debugging (``trace``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from lightspeed.errors import InputError
from lightspeed.fixed import quantize_float
from lightspeed.ir.graph import Graph
from lightspeed.ops import Fx, get_op

if TYPE_CHECKING:
    from lightspeed.quantize.model import QuantizedModel


def check_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate names, dtypes, shapes and finiteness; return float64 arrays."""
    missing = [n for n in graph.inputs if n not in inputs]
    extra = [n for n in inputs if n not in graph.inputs]
    if missing or extra:
        raise InputError(
            f"model inputs are {list(graph.inputs)}; missing {missing}, unexpected {extra}"
        )
    out = {}
    batch = None
    for name, shape in graph.inputs.items():
        a = np.asarray(inputs[name])
        if a.dtype.kind not in "fiub":
            raise InputError(f"input {name!r} has dtype {a.dtype}; give a float or integer array")
        if tuple(a.shape[1:]) != tuple(shape):
            hint = " (add a batch axis: x[None])" if tuple(a.shape) == tuple(shape) else ""
            raise InputError(
                f"input {name!r} has shape {a.shape}; expected (batch, {', '.join(map(str, shape))})"
                + hint
            )
        if batch is not None and a.shape[0] != batch:
            raise InputError(f"inputs have different batch sizes ({batch} and {a.shape[0]})")
        batch = a.shape[0]
        a = a.astype(np.float64, copy=False)
        if not np.all(np.isfinite(a)):
            raise InputError(f"input {name!r} contains NaN or Inf; clean it before inference")
        out[name] = a
    return out


def run_float(graph: Graph, inputs: Mapping[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
    """Float64 reference model. Returns the outputs (or every tensor with ``keep_all``)."""
    env = dict(check_inputs(graph, inputs))
    for node in graph.nodes:
        outs = get_op(node.op).run_float(node, [env[t] for t in node.inputs])
        env.update(zip(node.outputs, outs, strict=True))
    return env if keep_all else {t: env[t] for t in graph.outputs}


def run_fixed(
    q: QuantizedModel, inputs: Mapping[str, np.ndarray], keep_all: bool = False
) -> dict[str, Fx]:
    """Bit-exact fixed-point run. Inputs are floats, quantized to the model's input types."""
    arrays = check_inputs(q.graph, inputs)
    env: dict[str, Fx] = {}
    for name, a in arrays.items():
        t = q.input_types[name]
        env[name] = Fx(quantize_float(a, t, what=f"input {name!r}"), t)
    for node in q.graph.nodes:
        op = get_op(node.op)
        outs = op.run_fixed(node, [env[t] for t in node.inputs], q.precision[node.name], q.qparams[node.name])
        env.update(zip(node.outputs, outs, strict=True))
    return env if keep_all else {t: env[t] for t in q.graph.outputs}


def as_input_dict(graph: Graph, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        return dict(x)
    if len(graph.inputs) != 1:
        raise InputError(f"model has inputs {list(graph.inputs)}; pass a dict of arrays")
    return {next(iter(graph.inputs)): x}
