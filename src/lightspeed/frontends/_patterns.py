"""Layers lightspeed does not compile, recognised by their ONNX form before the import starts.

Exporters spell a recurrent layer, a LayerNorm, attention or GELU as one op or
as a pattern of small ops; the importer would stop at the first small op it
cannot place (a ``ConstantOfShape`` for an LSTM's initial state, a
batch-moving ``Transpose``) and name that instead of the layer. This module
finds the layer first and names it as the user wrote it (the ONNX node name
holds the framework's layer path), with what to do. A pattern whose ops an
op module imports (a newer lightspeed) is left to that module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lightspeed.errors import UnsupportedOpError
from lightspeed.ops import onnx_handlers
from lightspeed.ops.registry import all_ops

_RECURRENT = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "simple RNN"}
_NORMS = {"LayerNormalization", "GroupNormalization", "InstanceNormalization", "RMSNormalization"}
_ATTENTION_OPS = {"Attention", "MultiHeadAttention", "GroupQueryAttention"}
# ops between the scores MatMul and the Softmax of an attention block (scale, mask, shape)
_SCORE_PATH = {"Div", "Mul", "Add", "Sub", "Where", "Reshape", "Transpose", "Cast", "Identity"}
_AFTER_SOFTMAX = {"Dropout", "Cast", "Identity"}

_RECURRENT_FIX = (
    "lightspeed compiles feed-forward models: replace it with Conv1D/Dense layers over a fixed "
    "window of time steps, or serve the ONNX model as it is with the onnxruntime backend "
    "(lightspeed serve)"
)
_NORM_FIX = (
    "lightspeed normalizes each sample over the last axis only (LayerNormalization, "
    "RMSNormalization): use LayerNorm over the feature axis, or BatchNormalization (constant "
    "statistics), or serve the ONNX model with the onnxruntime backend"
)
_ATTENTION_FIX = (
    "write the attention out instead (Linear projections, softmax(q @ k.transpose(-2, -1) "
    "* scale) @ v), which imports through the matmul op, or serve the ONNX model with the "
    "onnxruntime backend"
)
_GELU_FIX = (
    "use ReLU, LeakyReLU, ELU or SELU in the model (tables for them exist), or serve the ONNX "
    "model with the onnxruntime backend"
)


def _has_op(name: str) -> bool:
    """Whether this build has the op that a pattern needs (then it is left to the importer)."""
    return name in all_ops()


def _refuse(onode: Any, layer: str, why: str) -> UnsupportedOpError:
    name = onode.name or (onode.output[0] if onode.output else onode.op_type)
    return UnsupportedOpError(f"layer {name!r}: {layer} is not supported yet; {why}")


def check_layers(model: Any) -> None:
    """Raise :class:`UnsupportedOpError` naming the first unsupported layer found in ``model``."""
    g = model.graph
    handled = set(onnx_handlers())
    producer = {t: n for n in g.node for t in n.output if t}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    const = _constant_tensors(g)
    for n in g.node:
        op = n.op_type
        if op in handled:
            continue
        if op in _RECURRENT:
            raise _refuse(n, f"the recurrent layer {_RECURRENT[op]} (ONNX {op})", _RECURRENT_FIX)
        if op in _NORMS:
            raise _refuse(n, f"{op}", _NORM_FIX)
        if op in _ATTENTION_OPS:
            raise _refuse(
                n, f"attention (ONNX {n.domain + '.' if n.domain else ''}{op})", _ATTENTION_FIX
            )
        if op == "Gelu" or (op == "Erf" and "Gelu" not in handled):  # a gelu op fuses the Erf form
            raise _refuse(
                n, "GELU" + (" (x/2 * (1 + erf(x/sqrt 2)))" if op == "Erf" else ""), _GELU_FIX
            )
    for n in g.node:
        if (
            n.op_type == "Sub"
            and not _has_op("layernorm")
            and _is_normalization(n, producer, consumers, const)
        ):
            raise _refuse(n, "layer normalization (x - ReduceMean(x) over the features)", _NORM_FIX)
        if (
            n.op_type == "Softmax"
            and not _has_op("matmul")
            and _in_attention(n, producer, consumers, const)
        ):
            raise _refuse(
                n, "attention (MatMul - Softmax - MatMul of computed tensors)", _ATTENTION_FIX
            )


def _constant_tensors(g: Any) -> set[str]:
    """Tensors that do not depend on a graph input (initializers and what they compute)."""
    inputs = {i.name for i in g.input} - {i.name for i in g.initializer}
    const = {i.name for i in g.initializer}
    for n in g.node:
        if all(t in const or not t for t in n.input) and not any(t in inputs for t in n.input):
            const.update(t for t in n.output if t)  # Constant, or computed from constants only
    return const


def _dynamic(ts: Iterable[str], const: set[str]) -> list[str]:
    return [t for t in ts if t and t not in const]


def _is_normalization(
    sub: Any, producer: dict[str, Any], consumers: dict[str, list[Any]], const: set[str]
) -> bool:
    """``Sub(x, ReduceMean(x))`` later divided by a run-time ``Sqrt``: a decomposed LayerNorm."""
    if len(_dynamic(sub.input, const)) != 2:
        return False
    mean = producer.get(sub.input[1])
    if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != sub.input[0]:
        return False
    frontier, seen = [sub.output[0]], set()
    for _ in range(8):
        nxt: list[str] = []
        for t in frontier:
            for c in consumers.get(t, []):
                if c.op_type in ("Sqrt", "Reciprocal", "Rsqrt"):
                    return True
                if id(c) not in seen:
                    seen.add(id(c))
                    nxt.extend(o for o in c.output if o)
        frontier = nxt
    return False


def _two_computed_matmul(n: Any, const: set[str]) -> bool:
    return n.op_type == "MatMul" and len(_dynamic(n.input, const)) == 2


def _in_attention(
    sm: Any, producer: dict[str, Any], consumers: dict[str, list[Any]], const
) -> bool:
    """A Softmax fed (through scaling/masking) by, or feeding, a product of computed tensors."""
    t, hops = sm.input[0], 0
    while (p := producer.get(t)) is not None and hops < 6:
        if _two_computed_matmul(p, const):
            return True
        if p.op_type not in _SCORE_PATH:
            break
        dyn = _dynamic(p.input, const)
        if not dyn:
            break
        t, hops = dyn[0], hops + 1
    frontier = [sm.output[0]]
    for _ in range(3):
        nxt = []
        for t in frontier:
            for c in consumers.get(t, []):
                if _two_computed_matmul(c, const):
                    return True
                if c.op_type in _AFTER_SOFTMAX:
                    nxt.extend(c.output[:1])
        frontier = nxt
    return False
