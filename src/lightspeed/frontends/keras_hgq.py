"""HGQ2 models (Keras 3) -> IR with the trained per-element fixed-point types.

HGQ2 (``pip install hgq2``) trains a fixed-point type per element of every
weight and activation tensor. Its quantizers are read through HGQ2's own API
(``Quantizer.quantizer.kif``, broadcast by the quantizer's ``bw_mapper``):

* an input/activation quantizer (a layer's ``iq``, a stand-alone ``Quantizer``
  layer) becomes a ``fixed_quant`` node: element e cast to
  ``ap_fixed<k+i+f, k+i>`` with the quantizer's rounding and overflow modes;
* a layer's quantized weights and biases (``qkernel``, ``qbias``: already on
  their per-element grids; 0-bit elements are 0) go into the dense/conv node as
  they are, with one trained type holding every element exactly (the finest
  element grid, the integer bits the values need);
* HGQ2 computes sums and ReLU in float on exact values, so lightspeed's exact
  accumulators (``precision="trained"``) give the same bits.

Keras keeps images channels-last; lightspeed's conv is channels-first, so each
convolution is wrapped in two transposes (wiring, free in firmware) and every
other tensor keeps Keras' layout, Flatten order included.

:data:`CONVERTERS` maps a layer class name to ``(layer, inputs, state) ->
outputs`` (tensor names); :func:`import_hgq` walks a Keras model with it. The
generic Keras frontend can merge these converters into its own table.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import ModelError, UnsupportedOpError, require
from lightspeed.fixed import FixedType, type_for_int_range
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ir.graph import Shape
from lightspeed.ops.quant import cover_type

_EXTRA = "hgq2"  # pip extra naming keras + hgq2


@dataclass
class KerasState:
    """What converters share: the nodes emitted so far and every tensor's shape."""

    nodes: list[Node] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set)

    def fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self._names:
            name, n = f"{base}_{n}", n + 1
        self._names.add(name)
        return name

    def emit(self, node: Node, shape: Shape) -> str:
        """Append ``node`` (one output, of ``shape`` without batch) and return its output."""
        self.nodes.append(node)
        self.shapes[node.outputs[0]] = tuple(int(d) for d in shape)
        return node.outputs[0]

    def node(self, base: str, op: str, inputs: list[str], shape: Shape, **kw: Any) -> str:
        name = self.fresh(base)
        return self.emit(Node(name, op, inputs, [name], **kw), shape)


Converter = Callable[[Any, list[str], KerasState], list[str]]


def _np(x: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


# ---------------------------------------------------------------------------
# quantizers

_ROUNDING = {"RND", "TRN", "RND_CONV", "TRN_ZERO", "RND_ZERO", "RND_MIN_INF", "RND_INF"}
_OVERFLOW = {"WRAP", "SAT", "SAT_SYM"}


def _fixed_quantizer(q: Any, where: str) -> Any:
    """The internal fixed-point quantizer of an HGQ2 ``Quantizer``, or None for a pass-through."""
    from hgq.quantizer.internal import DummyQuantizer, FixedPointQuantizerBase

    inner = q.quantizer
    if isinstance(inner, DummyQuantizer):
        return None
    if not isinstance(inner, FixedPointQuantizerBase):
        raise UnsupportedOpError(
            f"{where}: quantizer {type(inner).__name__} (q_type {q.q_type!r}) is not fixed point; "
            "lightspeed supports HGQ2's fixed-point quantizers (q_type 'kif' or 'kbi')"
        )
    if q.scaler is not None or q.affine is not None:
        raise UnsupportedOpError(
            f"{where}: quantizer with scaler/affine has no fixed-point type; train without them"
        )
    return inner


def _modes(inner: Any, where: str) -> tuple[str, str]:
    rnd = inner.round_mode.removeprefix("S_")  # stochastic rounding only acts in training
    ovf = inner.overflow_mode
    if rnd not in _ROUNDING or ovf not in _OVERFLOW:
        raise UnsupportedOpError(
            f"{where}: quantizer modes {inner.round_mode}/{inner.overflow_mode} are not supported; "
            f"use rounding {sorted(_ROUNDING)} and overflow WRAP, SAT or SAT_SYM"
        )
    return rnd, ovf


def quantizer_kif(inner: Any, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-element (k, i, f) integers of a quantizer over a tensor of ``shape`` (no batch)."""
    k, i, f = (_np(inner.bw_mapper.bw_to_x(v, (1, *shape)))[0] for v in inner.kif)
    k, i, f = np.broadcast_arrays(k, i, f)
    # HGQ2 prunes where k+i+f <= 0 (its clamp i >= -f only ever touches pruned elements)
    return k.astype(np.int64), i.astype(np.int64), f.astype(np.int64)


def quantize_tensor(q: Any, x: str, st: KerasState, base: str) -> str:
    """A ``fixed_quant`` node for HGQ2 quantizer ``q`` on tensor ``x`` (``x`` for a pass-through)."""
    inner = _fixed_quantizer(q, f"quantizer {base!r}")
    if inner is None:
        return x
    rnd, ovf = _modes(inner, f"quantizer {base!r}")
    shape = st.shapes[x]
    k, i, f = quantizer_kif(inner, shape)
    params = {"k": k.astype(np.float64), "i": i.astype(np.float64), "f": f.astype(np.float64)}
    t = cover_type(k, i, f, rnd, ovf, base)
    attrs = {"rounding": rnd, "overflow": ovf}
    return st.node(base, "fixed_quant", [x], shape, attrs=attrs, params=params, types={"result": t})


def weight_type(values: np.ndarray, q: Any, where: str) -> FixedType:
    """One type holding HGQ2-quantized values exactly (finest live element grid)."""
    inner = _fixed_quantizer(q, where)
    if inner is None:
        raise UnsupportedOpError(f"{where}: weights are not quantized; use a fixed-point kq/bq")
    k, i, f = (np.broadcast_to(_np(inner.bw_mapper.bw_to_x(v, values.shape)), values.shape) for v in inner.kif)  # fmt: skip
    live = (k + i + f > 0) & (values != 0)
    frac = int(f[live].max()) if np.any(live) else 0
    m = np.ldexp(values, frac)
    if np.any(m != np.round(m)):
        raise ModelError(f"{where}: quantized values are not on the quantizer's grid 2^-{frac}")
    return type_for_int_range(int(m.min()), int(m.max()), frac, signed=None, rounding="RND")


# ---------------------------------------------------------------------------
# layers


def _activation(layer: Any, x: str, st: KerasState, base: str) -> str:
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", "linear") if act is not None else "linear"
    if name == "linear":
        return x
    if name == "relu":
        return st.node(f"{base}_relu", "relu", [x], st.shapes[x])
    raise UnsupportedOpError(
        f"layer {layer.name!r} ({type(layer).__name__}): activation {name!r} is computed in float "
        "by HGQ2 and has no exact fixed-point form; use 'relu' or 'linear' (or a separate "
        "quantized activation)"
    )


def _input_quant(layer: Any, x: str, st: KerasState) -> str:
    if not getattr(layer, "enable_iq", False):
        return x
    return quantize_tensor(layer.iq, x, st, f"{layer.name}_iq")


def _output_quant(layer: Any, y: str, st: KerasState) -> str:
    if not getattr(layer, "enable_oq", False):
        return y
    return quantize_tensor(layer.oq, y, st, f"{layer.name}_oq")


def _mac_params(layer: Any, w: np.ndarray) -> tuple[dict, dict]:
    params: dict[str, np.ndarray] = {"weight": w}
    types = {"weight": weight_type(_np(layer.qkernel), layer.kq, f"layer {layer.name!r} kernel")}
    if layer.bias is not None:
        b = _np(layer.qbias)
        params["bias"] = b
        types["bias"] = weight_type(b, layer.bq, f"layer {layer.name!r} bias")
    return params, types


def convert_dense(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    x = _input_quant(layer, inputs[0], st)
    params, types = _mac_params(layer, _np(layer.qkernel))
    shape = (*st.shapes[x][:-1], layer.units)
    y = st.node(layer.name, "dense", [x], shape, params=params, types=types)
    return [_output_quant(layer, _activation(layer, y, st, layer.name), st)]


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def convert_conv(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    if layer.data_format != "channels_last":
        raise UnsupportedOpError(f"{where}: data_format {layer.data_format!r}; use channels_last")
    if layer.padding not in ("valid", "same"):
        raise UnsupportedOpError(f"{where}: padding {layer.padding!r}; use 'valid' or 'same'")
    x = _input_quant(layer, inputs[0], st)
    spatial = st.shapes[x][:-1]
    nd = len(spatial)
    xt = _to_channels_first(x, st, layer.name)
    kern = _np(layer.qkernel)  # (*kernel, C_in/group, C_out)
    w = np.transpose(kern, (nd + 1, nd, *range(nd)))  # (C_out, C_in/group, *kernel)
    params, types = _mac_params(layer, w)
    ks, strides, dil = list(kern.shape[:nd]), list(layer.strides), list(layer.dilation_rate)
    if layer.padding == "same":
        pp = [_same_pads(n, k, s, d) for n, k, s, d in zip(spatial, ks, strides, dil, strict=True)]
        pads = [p[0] for p in pp] + [p[1] for p in pp]
    else:
        pads = [0] * (2 * nd)
    out_sp = [
        (n + pads[a] + pads[a + nd] - (k - 1) * d - 1) // s + 1
        for a, (n, k, s, d) in enumerate(zip(spatial, ks, strides, dil, strict=True))
    ]
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": int(layer.groups)}
    filters = int(kern.shape[-1])
    y = st.node(
        layer.name, "conv", [xt], (filters, *out_sp), attrs=attrs, params=params, types=types
    )
    y = _to_channels_last(_activation(layer, y, st, layer.name), st, layer.name)
    return [_output_quant(layer, y, st)]


def _to_channels_first(x: str, st: KerasState, base: str) -> str:
    """(*spatial, C) -> (C, *spatial): lightspeed's conv and pooling are channels-first."""
    shape = st.shapes[x]
    nd = len(shape) - 1
    perm = [nd, *range(nd)]
    return st.node(
        f"{base}_to_cf", "transpose", [x], (shape[-1], *shape[:-1]), attrs={"perm": perm}
    )


def _to_channels_last(y: str, st: KerasState, base: str) -> str:
    shape = st.shapes[y]
    perm = [*range(1, len(shape)), 0]
    return st.node(f"{base}_to_cl", "transpose", [y], (*shape[1:], shape[0]), attrs={"perm": perm})


def convert_maxpool(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    if layer.data_format != "channels_last":
        raise UnsupportedOpError(f"{where}: data_format {layer.data_format!r}; use channels_last")
    if layer.padding not in ("valid", "same"):
        raise UnsupportedOpError(f"{where}: padding {layer.padding!r}; use 'valid' or 'same'")
    x = _input_quant(layer, inputs[0], st)
    spatial = st.shapes[x][:-1]
    ks, strides = [int(v) for v in layer.pool_size], [int(v) for v in layer.strides]
    if layer.padding == "same":  # keras pads max pooling with -inf, as lightspeed's maxpool
        pp = [_same_pads(n, k, s, 1) for n, k, s in zip(spatial, ks, strides, strict=True)]
        pads = [p[0] for p in pp] + [p[1] for p in pp]
    else:
        pads = [0] * (2 * len(ks))
    nd = len(ks)
    out_sp = [
        (n + pads[a] + pads[a + nd] - k) // s + 1
        for a, (n, k, s) in enumerate(zip(spatial, ks, strides, strict=True))
    ]
    xt = _to_channels_first(x, st, layer.name)
    attrs = {"kernel_shape": ks, "strides": strides, "pads": pads}
    y = st.node(layer.name, "maxpool", [xt], (st.shapes[x][-1], *out_sp), attrs=attrs)
    return [_output_quant(layer, _to_channels_last(y, st, layer.name), st)]


_MERGE_OPS = {"QAdd": "add", "QSubtract": "sub", "QMultiply": "mul", "QMaximum": "max", "QMinimum": "min"}  # fmt: skip


def convert_merge(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    op = _MERGE_OPS[type(layer).__name__]
    if op in ("sub",) and len(inputs) != 2:
        raise UnsupportedOpError(f"layer {layer.name!r}: Subtract needs exactly two inputs")
    xs = inputs
    if getattr(layer, "enable_iq", False):
        xs = [quantize_tensor(q, x, st, f"{layer.name}_iq{n}") for n, (q, x) in enumerate(zip(layer.iq, inputs, strict=True))]  # fmt: skip
    shape = st.shapes[xs[0]]
    if any(st.shapes[x] != shape for x in xs):
        raise UnsupportedOpError(f"layer {layer.name!r}: inputs of different shapes (broadcasting)")
    if op in ("add", "mul") and len(xs) > 2:  # chain the binary ops in Keras' order
        y = xs[0]
        for n, x in enumerate(xs[1:]):
            y = st.node(f"{layer.name}_{n}" if n < len(xs) - 2 else layer.name, op, [y, x], shape)
        return [_output_quant(layer, y, st)]
    return [_output_quant(layer, st.node(layer.name, op, xs, shape), st)]


def convert_quantizer(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    return [quantize_tensor(layer, inputs[0], st, layer.name)]


def convert_flatten(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    n = int(np.prod(st.shapes[inputs[0]]))
    return [st.node(layer.name, "flatten", inputs[:1], (n,))]


def convert_reshape(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    target = [int(d) for d in layer.target_shape]
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = int(np.prod(st.shapes[inputs[0]])) // known
    return [st.node(layer.name, "reshape", inputs[:1], tuple(target), attrs={"shape": target})]


def convert_relu(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    if type(layer).__name__ == "Activation":
        return [_activation(layer, inputs[0], st, layer.name)]
    if float(layer.negative_slope) or layer.max_value is not None or float(layer.threshold):
        raise UnsupportedOpError(
            f"layer {layer.name!r} (ReLU): only plain ReLU (no negative_slope, max_value, threshold)"
        )
    return [st.node(layer.name, "relu", inputs[:1], st.shapes[inputs[0]])]


def _identity(layer: Any, inputs: list[str], st: KerasState) -> list[str]:
    return inputs[:1]


CONVERTERS: dict[str, Converter] = {
    "QDense": convert_dense,
    "QConv1D": convert_conv,
    "QConv2D": convert_conv,
    "QBatchNormDense": convert_dense,  # qkernel/qbias are the fused, quantized ones
    "QMaxPooling1D": convert_maxpool,
    "QMaxPooling2D": convert_maxpool,
    **{name: convert_merge for name in _MERGE_OPS},
    "Quantizer": convert_quantizer,
    "Flatten": convert_flatten,
    "Reshape": convert_reshape,
    "Activation": convert_relu,
    "ReLU": convert_relu,
    "Dropout": _identity,
    "InputLayer": _identity,
}

# what to do instead, for HGQ2 layers users often reach for
_HINTS = {
    "QEinsumDense": "use QDense (the last-axis product) instead",
    "QAveragePooling2D": "HGQ2 averages in float; use QMaxPooling2D or a strided QConv2D",
    "QAveragePooling1D": "HGQ2 averages in float; use QMaxPooling1D or a strided QConv1D",
    "QSoftmax": "use a plain output (the argmax is unchanged) or compute softmax after the model",
    "QUnaryFunctionLUT": "lookup-table activations are not supported yet; use relu",
}


# ---------------------------------------------------------------------------
# the driver


def is_hgq_source(source: Any) -> bool:
    """A Keras 3 model object with HGQ2 layers, or a ``.keras`` file that holds one.

    Cheap: never imports keras (a live model means keras is imported already) and
    reads only the archive's config.
    """
    import sys

    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() != ".keras" or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                return False
            return '"module": "hgq.' in z.read("config.json").decode("utf-8", "replace")
    keras = sys.modules.get("keras")
    if keras is None or not isinstance(source, keras.Model):
        return False
    return any(type(la).__module__.startswith("hgq") for la in source.layers)


def _calls(fn: Any) -> list[tuple[Any, Any]]:
    """(layer, call node) pairs that compute the model's outputs, inputs first.

    Followed back from the outputs through each tensor's ``_keras_history``:
    a layer may hold other calls (a reloaded Sequential calls its layers twice).
    """
    order: list[tuple[Any, Any]] = []
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(t, False) for t in reversed(fn.outputs)]
    while stack:
        t, expanded = stack.pop()
        layer, index, _ = t._keras_history
        node = layer._inbound_nodes[index]
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            order.append((layer, node))
            continue
        stack.append((t, True))
        stack.extend((x, False) for x in reversed(node.input_tensors))
    return order


def import_hgq(model: Any, converters: dict[str, Converter] | None = None) -> Graph:
    """Convert a built HGQ2/Keras 3 model (or a ``.keras`` file of one) to an IR graph."""
    os.environ.setdefault(
        "KERAS_BACKEND", "torch"
    )  # as the Keras importer: lightspeed's extras bring torch
    keras = require("keras", _EXTRA, "HGQ2 models")
    require("hgq", _EXTRA, "HGQ2 models")  # registers HGQ2's layers with Keras
    if isinstance(model, (str, Path)):
        try:
            model = keras.saving.load_model(model, compile=False)
        except Exception as exc:  # Keras raises many kinds; say which file and why
            raise ModelError(f"Keras could not load HGQ2 model {str(model)!r}: {exc}") from None
    table = converters or CONVERTERS
    if not isinstance(model, keras.Model):
        raise ModelError(f"expected a keras.Model, got {type(model).__name__}")
    fn = getattr(model, "_functional", None) or model
    if not getattr(fn, "inputs", None):
        raise ModelError(f"model {model.name!r} is not built; build it with keras.Input first")
    st = KerasState()
    names: dict[int, str] = {}
    inputs: dict[str, Shape] = {}
    for t in fn.inputs:
        history = getattr(t, "_keras_history", None)  # the InputLayer's name reads best
        name = st.fresh(getattr(getattr(history, "operation", None), "name", None) or t.name)
        names[id(t)] = name
        inputs[name] = st.shapes[name] = tuple(int(d) for d in t.shape[1:])
    for layer, node in _calls(fn):
        kind = type(layer).__name__
        if kind == "InputLayer":
            if not all(id(t) in names for t in node.output_tensors):
                raise ModelError(f"model {model.name!r} uses input {layer.name!r} it does not list")
            continue
        conv = table.get(kind)
        if conv is None:
            hint = _HINTS.get(kind, "")
            raise UnsupportedOpError(
                f"layer {layer.name!r} ({kind}) is not supported by the HGQ2 importer"
                + (f"; {hint}" if hint else "")
                + f". Supported layers: {', '.join(sorted(table))}"
            )
        outs = conv(layer, [names[id(t)] for t in node.input_tensors], st)
        if len(outs) != len(node.output_tensors):
            raise ModelError(f"layer {layer.name!r}: {len(node.output_tensors)} outputs expected")
        for t, o in zip(node.output_tensors, outs, strict=True):
            names[id(t)] = o
    outputs = [names[id(t)] for t in fn.outputs]
    if any(o in inputs for o in outputs):
        raise ModelError(f"model {model.name!r}: an output is a model input (nothing to compute)")
    return infer_shapes(Graph(model.name, inputs, outputs, st.nodes))
