"""Keras importer: Keras 3 ``.keras``, full-model ``.h5`` (Keras 2 and Keras 3's legacy h5),
``arch.json`` + ``weights.h5`` (Keras 2 / tf.keras), QKeras layers -> float IR graph.

Every format is read as the same two things: the model's JSON config (the
layer list with each layer's ``config`` and ``inbound_nodes``) and its weights
by layer name and short weight name (``kernel``, ``bias``, ``gamma``...).
HDF5 files (full models and weight files) are read with h5py, so Keras 2 and
QKeras files need neither TensorFlow nor QKeras; a ``.keras`` archive is
opened with Keras 3 itself (the optional ``keras`` extra).

Keras tensors are channels-last; lightspeed's conv and pooling ops are
channels-first. Each converted tensor remembers its layout: ``cl`` (Keras's
own element order) or ``cf`` (channel axis moved first). A layer asks for the
layout it needs and a ``transpose`` (pure wiring in firmware) is inserted
only where the layout changes, so results equal Keras's, Flatten after a
conv included. Graph inputs and outputs are in Keras's layout and keep the
Keras layer names; nodes are named after their Keras layers (an activation
split off a layer is ``<layer>_<activation>``).

QKeras layers carry their quantizers as trained types (``node.types``):
quantized weights/biases become the layer's ``weight``/``bias`` types, a
quantized activation (QActivation or a layer's quantizer activation) a
``quant`` node, so ``precision="trained"`` is bit-exact with QKeras.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import ModelError, ShapeError, UnsupportedOpError, require
from lightspeed.fixed import FixedType
from lightspeed.frontends import _qkeras
from lightspeed.ir import Graph, Shape, passes
from lightspeed.ir.graph import Node
from lightspeed.ops.onnx_import import ImportState, same_pads

Weights = dict[str, dict[str, np.ndarray]]  # layer name -> short weight name -> values


@dataclass
class KLayer:
    cls: str
    name: str
    config: dict[str, Any]
    calls: list[list[str]]  # per call: the input tensor keys ("layer:node:tensor")
    module: str = ""  # the Python module Keras 3 recorded for the class ("hgq.layers", ...)


@dataclass
class KModel:
    name: str
    layers: list[KLayer]
    inputs: list[str]  # tensor keys of the model inputs
    outputs: list[str]
    weights: Weights
    keras_major: int  # 2 (tf.keras) or 3: a few defaults differ


# ---------------------------------------------------------------------------
# reading the files


def is_keras_source(source: Any) -> bool:
    """A Keras model file (.keras, .h5/.hdf5, Keras JSON architecture) or a live keras.Model."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix in (".keras", ".h5", ".hdf5"):
            return True
        return suffix == ".json" and path.is_file() and _looks_like_keras_json(path)
    if not type(source).__module__.startswith(("keras.", "tf_keras.")):
        return False
    # HGQ2 models are Keras models too; their own frontend reads them
    layers = getattr(source, "layers", [])
    return hasattr(source, "get_config") and not any(
        type(layer).__module__.startswith("hgq") for layer in layers
    )


def _looks_like_keras_json(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return '"class_name"' in head and '"config"' in head


def read_keras(source: Any, weights: str | Path | None = None) -> KModel:
    """The model config and weights of any accepted Keras source."""
    if not isinstance(source, (str, Path)):
        return _from_live_model(source)
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if weights is not None:
            raise ModelError(f"{str(path)!r} holds its own weights; drop --weights")
        return _read_keras_archive(path)
    if suffix == ".json":
        if weights is None:
            raise ModelError(
                f"{str(path)!r} is a Keras architecture without weights; pass the weights file "
                "too (--weights weights.h5, or weights=... in Python)"
            )
        try:
            config = json.loads(path.read_text())
        except ValueError as exc:
            raise ModelError(f"{str(path)!r} is not valid JSON ({exc})") from None
        return _assemble(
            config, _read_h5_weights(Path(weights)), _major(config.get("keras_version"))
        )
    h5py = require("h5py", "keras", "reading Keras .h5 files")
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version")
    except OSError as exc:
        raise ModelError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
    if raw is None:
        if weights is not None:  # a weights-only file given as the model
            raise ModelError(
                f"{str(path)!r} holds weights only; give the architecture .json as the model"
            )
        raise ModelError(
            f"{str(path)!r} holds no model config (a weights-only file?); pass the architecture "
            f"JSON as the model and this file as --weights"
        )
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    wpath = Path(weights) if weights is not None else path
    return _assemble(config, _read_h5_weights(wpath), _major(version))


def _major(version: Any) -> int:
    if isinstance(version, bytes):
        version = version.decode()
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 2


def _read_h5_weights(path: Path) -> Weights:
    """Weights of a Keras 2 / legacy-h5 file by layer name (``weight_names`` of each layer group)."""
    h5py = require("h5py", "keras", "reading Keras .h5 files")
    if not path.is_file():
        raise ModelError(f"weights file {str(path)!r} does not exist; check the path")
    out: Weights = {}
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)
            for lname in root:
                group = root[lname]
                names = group.attrs.get("weight_names", [])
                layer: dict[str, np.ndarray] = {}
                for wn in names:
                    wn = wn.decode() if isinstance(wn, bytes) else str(wn)
                    short = wn.rsplit("/", 1)[-1].split(":")[0]
                    layer[short] = np.asarray(group[wn])
                out[str(lname)] = layer
    except OSError as exc:
        raise ModelError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
    return out


def _read_keras_archive(path: Path) -> KModel:
    """A Keras 3 archive: Keras itself loads it; layers Keras cannot build here (QKeras for
    Keras 3, other custom layers) fall back to reading the archive's weights with h5py."""
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
            blob = z.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelError(f"{str(path)!r} is not a Keras 3 .keras archive ({exc})") from None
    major = _major(meta.get("keras_version", "3"))
    try:
        keras = _keras()
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception:  # Keras missing, or a layer class it does not know (custom, QKeras v3)
        return _assemble(config, _archive_weights(blob, config, path), major)
    return _assemble(config, _live_weights(model), major)


def _snake(name: str) -> str:
    """Keras' ``naming.to_snake_case``: how the archive names each layer's weight group."""
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _var_names(cls: str, cfg: dict[str, Any]) -> list[str]:
    """The order in which a layer creates its variables (what ``vars/0``, ``vars/1``... are)."""
    base = cls[1:] if cls.startswith("Q") and cls[1:2].isupper() else cls
    if base.startswith("BatchNormalization"):
        return [
            *(["gamma"] if cfg.get("scale", True) else []),
            *(["beta"] if cfg.get("center", True) else []),
            "moving_mean", "moving_variance",
        ]  # fmt: skip
    if base.startswith("Separable"):
        return ["depthwise_kernel", "pointwise_kernel", "bias"]
    if base.startswith("Depthwise"):
        return ["depthwise_kernel", "bias"]
    if base == "PReLU":
        return ["alpha"]
    if base == "LayerNormalization":
        return [*(["gamma"] if cfg.get("scale", True) else []),
                *(["beta"] if cfg.get("center", True) else [])]  # fmt: skip
    if base == "RMSNormalization":
        return ["scale"]
    return ["kernel", "bias"]


def _archive_weights(blob: bytes, config: dict[str, Any], path: Path) -> Weights:
    """Weights of a .keras archive read with h5py: ``layers/<snake_case class>[_i]/vars/<k>``."""
    import io

    h5py = require("h5py", "keras", "reading .keras files")
    body = config.get("config", {})
    entries = body.get("layers", []) if isinstance(body, dict) else []
    if config.get("class_name") == "Sequential":
        entries = [e for e in entries if e.get("class_name") != "InputLayer"]
    out: Weights = {}
    used: dict[str, int] = {}
    with h5py.File(io.BytesIO(blob), "r") as f:
        groups = f.get("layers", {})
        for e in entries:
            cls, cfg = str(e.get("class_name")), e.get("config", {})
            key = _snake(cls)
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            lname = cfg.get("name") or e.get("name")
            if key not in groups:
                out[lname] = {}
                continue
            vars_ = groups[key].get("vars", {})
            values = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
            names = _var_names(cls, cfg)
            if len(values) > len(names):
                raise ModelError(
                    f"{str(path)!r}: layer {lname!r} ({cls}) stores {len(values)} variables, "
                    f"more than the {len(names)} lightspeed knows for it; load the model in "
                    "Keras and pass the keras.Model instead"
                )
            names = [n for n in names if n != "bias" or cfg.get("use_bias", True)]
            out[lname] = dict(zip(names, values, strict=False))
    return out


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the backend lightspeed's own extras bring
    return require("keras", "keras", "reading .keras files")


def _from_live_model(model: Any) -> KModel:
    config = {"class_name": type(model).__name__, "config": model.get_config()}
    major = 2 if type(model).__module__.startswith("tf_keras") else 3
    return _assemble(config, _live_weights(model), major)


def _live_weights(model: Any) -> Weights:
    out: Weights = {}
    for layer in model.layers:
        out[layer.name] = {
            str(getattr(v, "path", v.name)).rsplit("/", 1)[-1].split(":")[0]: np.asarray(v)
            for v in layer.weights
        }
    return out


# ---------------------------------------------------------------------------
# the layer graph from a config


def _assemble(config: dict[str, Any], weights: Weights, major: int) -> KModel:
    cls = config.get("class_name")
    body = config.get("config", {})
    if cls == "Sequential":
        return _sequential(body, weights, major)
    if cls in ("Functional", "Model"):
        return _functional(body, weights, major)
    raise ModelError(
        f"the Keras model is a {cls!r}; lightspeed reads Sequential and functional models "
        "(subclassed models have no config: rebuild them with the functional API)"
    )


def _sequential(body: Any, weights: Weights, major: int) -> KModel:
    entries = body if isinstance(body, list) else body.get("layers", [])
    name = "sequential" if isinstance(body, list) else body.get("name", "sequential")
    layers: list[KLayer] = []
    prev: str | None = None
    for e in entries:
        lname = e.get("config", {}).get("name") or e.get("name")
        cfg = e.get("config", {})
        if prev is None:
            if e["class_name"] != "InputLayer":
                shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
                if shape is None and isinstance(body, dict):  # Keras 3 model.build((None, ...))
                    shape = body.get("build_input_shape")
                if shape is None:
                    raise ShapeError(
                        f"the Sequential model {name!r} declares no input shape; build it with "
                        "keras.Input(shape) first"
                    )
                layers.append(KLayer("InputLayer", "input_1", {"batch_input_shape": shape}, []))
                prev = "input_1:0:0"
            else:
                layers.append(KLayer("InputLayer", lname, cfg, []))
                prev = f"{lname}:0:0"
                continue
        layers.append(KLayer(e["class_name"], lname, cfg, [[prev]], str(e.get("module") or "")))
        prev = f"{lname}:0:0"
    if prev is None:
        raise ModelError(f"the Sequential model {name!r} has no layers")
    return KModel(name, layers, [f"{layers[0].name}:0:0"], [prev], weights, major)


def _keys(spec: Any) -> list[str]:
    """``[["dense", 0, 0], ...]`` or one ``["dense", 0, 0]`` -> tensor keys."""
    if spec and isinstance(spec[0], str):
        spec = [spec]
    return [f"{s[0]}:{s[1]}:{s[2]}" for s in spec]


def _history(obj: Any, out: list[str]) -> None:
    """Collect Keras 3 ``keras_history`` references in call arguments, in order."""
    if isinstance(obj, dict):
        hist = (
            obj.get("config", {}).get("keras_history")
            if obj.get("class_name") == "__keras_tensor__"
            else None
        )
        if hist is not None:
            out.append(f"{hist[0]}:{hist[1]}:{hist[2]}")
            return
        for v in obj.values():
            _history(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _history(v, out)


def _calls(inbound: Any) -> list[list[str]]:
    calls = []
    for node in inbound or []:
        keys: list[str] = []
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            _history(node.get("args", []), keys)
        else:  # Keras 2: [["dense", 0, 0, {}], ...]
            keys = [f"{e[0]}:{e[1]}:{e[2]}" for e in node]
        calls.append(keys)
    return calls


def _functional(body: dict[str, Any], weights: Weights, major: int) -> KModel:
    layers = []
    for e in body.get("layers", []):
        lname = e.get("name") or e.get("config", {}).get("name")
        layers.append(
            KLayer(
                e["class_name"], lname, e.get("config", {}), _calls(e.get("inbound_nodes")),
                str(e.get("module") or ""),
            )
        )  # fmt: skip
    return KModel(
        body.get("name", "model"), layers, _keys(body.get("input_layers", [])),
        _keys(body.get("output_layers", [])), weights, major,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# conversion state


@dataclass
class _State:
    """The IR being built and where each Keras tensor lives in it (name, layout)."""

    st: ImportState
    model: KModel
    tensors: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (ir name, layout)
    moved: dict[tuple[str, str], str] = field(default_factory=dict)  # (ir name, layout) -> ir name
    tnames: set[str] = field(default_factory=set)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.tnames or name in self.st.shapes:
            name = f"{base}_{i}"
            i += 1
        self.tnames.add(name)
        return name

    def emit(self, node: Node) -> Node:
        return self.st.emit(node)

    def moved_to(self, name: str, lay: str, want: str) -> str:
        """IR tensor ``name`` (in layout ``lay``) in layout ``want``, transposed once."""
        if want in ("any", lay) or len(self.st.shapes[name]) < 2:
            return name
        if (name, want) not in self.moved:
            r = len(self.st.shapes[name])
            perm = [r - 1, *range(r - 1)] if want == "cf" else [*range(1, r), 0]
            out = self.fresh(f"{name}_{want}")
            self.emit(Node(f"{name}_to_{want}", "transpose", [name], [out], attrs={"perm": perm}))
            self.moved[(name, want)] = out
        return self.moved[(name, want)]


@dataclass
class _Call:
    """One call of one Keras layer: its inputs, output key and weights."""

    s: _State
    layer: KLayer
    ins: list[str]
    out_key: str

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def cfg(self) -> dict[str, Any]:
        return self.layer.config

    def what(self) -> str:
        return f"Keras layer {self.name!r} ({self.layer.cls})"

    def weight(self, short: str) -> np.ndarray:
        w = self.s.model.weights.get(self.name, {})
        for key in (short, *_ALIASES.get(short, ())):
            if key in w:
                return np.asarray(w[key], dtype=np.float64)
        raise ModelError(
            f"{self.what()}: weight {short!r} is missing from the weights "
            f"(found: {', '.join(w) or 'none'}); is the weights file from this model?"
        )

    def layout(self, i: int = 0) -> str:
        return self.s.tensors[self.ins[i]][1]

    def kshape(self, i: int = 0) -> Shape:
        """The Keras (channels-last) shape of input ``i``, without the batch axis."""
        name, lay = self.s.tensors[self.ins[i]]
        return to_keras(self.s.st.shapes[name], lay)

    def x(self, i: int = 0, want: str = "any") -> str:
        """IR tensor of input ``i`` in layout ``want`` ("cl", "cf" or "any")."""
        name, lay = self.s.tensors[self.ins[i]]
        return self.s.moved_to(name, lay, want)

    def node(
        self, op: str, ins: list[str], layout: str, suffix: str = "", attrs: dict | None = None,
        params: dict | None = None, types: dict | None = None,
    ) -> str:  # fmt: skip
        """Emit one IR node; returns its output tensor (registered as this call's output)."""
        need_op(op, self.layer)
        base = f"{self.name}_{suffix}" if suffix else self.name
        out = self.s.fresh(base)
        self.s.emit(
            Node(base, op, ins, [out], attrs=attrs or {}, params=params or {}, types=types or {})
        )
        self.set_out(out, layout)
        return out

    def set_out(self, tensor: str, layout: str) -> None:
        if len(self.s.st.shapes[tensor]) < 2:
            layout = "cl"
        self.s.tensors[self.out_key] = (tensor, layout)

    def refuse(self, form: str, fix: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.what()}: {form} is not supported; {fix}")


# Keras 3 names some weights differently from Keras 2
_ALIASES = {"depthwise_kernel": ("kernel",)}


def to_keras(shape: Shape, layout: str) -> Shape:
    return shape if layout == "cl" or len(shape) < 2 else (*shape[1:], shape[0])


def need_op(op: str, layer: KLayer) -> None:
    from lightspeed.ops.registry import all_ops

    if op not in all_ops():
        raise UnsupportedOpError(
            f"Keras layer {layer.cls} ({layer.name!r}) needs op {op!r}, which this build of "
            "lightspeed lacks; update lightspeed or replace the layer"
        )


# ---------------------------------------------------------------------------
# activations


def _act_name(spec: Any) -> str:
    if spec is None:
        return "linear"
    if isinstance(spec, dict):
        inner = spec.get("config", {})
        return str(inner.get("name") or spec.get("class_name", "")).lower()
    return str(spec).lower()


def activation(c: _Call, spec: Any, x: str, layout: str) -> str:
    """Apply a Keras activation (name or serialized) or a QKeras quantizer to tensor ``x``."""
    if _qkeras.is_quantizer_string(spec) or (
        isinstance(spec, dict) and spec.get("class_name") in _qkeras._SIGNATURES
    ):
        q = _qkeras.parse(spec, f"layer {c.name!r} activation")
        assert q is not None
        t = _qkeras.activation_type(q)
        return c.node("quant", [x], layout, q.kind, types={"result": t})
    name = _act_name(spec)
    if name in ("linear", "", "none"):
        c.set_out(x, layout)
        return x
    if name == "softmax":
        x = c.s.moved_to(x, layout, "cl")
        return c.node("softmax", [x], "cl", "softmax", attrs={"axis": -1})
    simple = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "elu": "elu", "selu": "selu",
              "softplus": "softplus", "softsign": "softsign", "gelu": "gelu",
              "hard_swish": "hard_swish", "hard_silu": "hard_swish"}  # fmt: skip
    if name in simple:
        attrs: dict[str, Any] = {"alpha": 1.0} if name == "elu" else {}
        if name == "gelu":  # keras.activations.gelu defaults to the exact (erf) form
            attrs = {"approximate": "none"}
        return c.node(simple[name], [x], layout, name, attrs=attrs)
    if name == "relu6":
        return c.node("clip", [x], layout, name, attrs={"min": 0.0, "max": 6.0})
    if name == "leaky_relu":
        return c.node(
            "leaky_relu",
            [x],
            layout,
            name,
            attrs={"alpha": 0.2 if c.s.model.keras_major >= 3 else 0.3},
        )
    if name == "hard_sigmoid":
        # Keras 3: relu6(x + 3) / 6; tf.keras 2: clip(0.2 x + 0.5, 0, 1)
        slope = 1.0 / 6.0 if c.s.model.keras_major >= 3 else 0.2
        return _hard_sigmoid(c, x, layout, slope)
    hint = {"silu": "hard_silu (hard_swish) is its piecewise-linear form; ",
            "swish": "hard_silu (hard_swish) is its piecewise-linear form; "}.get(name, "")  # fmt: skip
    raise UnsupportedOpError(
        f"{c.what()}: activation {name!r} is not supported; {hint}use relu, relu6, leaky_relu, "
        "sigmoid, tanh, softmax, elu, selu, softplus, softsign, gelu, hard_sigmoid or hard_swish"
    )


def _hard_sigmoid(c: _Call, x: str, layout: str, slope: float) -> str:
    shape = c.s.st.shapes[x]
    scaled = c.s.fresh(f"{c.name}_hs_affine")
    c.s.emit(Node(
        f"{c.name}_hard_sigmoid_scale", "affine", [x], [scaled],
        attrs={"onnx_op": "HardSigmoid", "origin": c.name},
        params={"scale": np.full(shape, slope), "shift": np.full(shape, 0.5)},
    ))  # fmt: skip
    return c.node("clip", [scaled], layout, "hard_sigmoid", attrs={"min": 0.0, "max": 1.0})


# ---------------------------------------------------------------------------
# layer converters


def _quantized(
    c: _Call, w: np.ndarray, key: str, role: str, types: dict[str, FixedType]
) -> np.ndarray:
    """Apply the layer's QKeras quantizer ``key`` (if any) to weight ``w``; record its type."""
    q = _qkeras.parse(c.cfg.get(key), f"layer {c.name!r} {key}")
    if q is None:
        return w
    v, t = _qkeras.quantize_weights(q, w)
    types[role] = t
    return v


def _dense(c: _Call) -> None:
    _dense_from(c, c.weight("kernel"), c.weight("bias") if c.cfg.get("use_bias", True) else None)


def _dense_from(c: _Call, kernel: np.ndarray, bias: np.ndarray | None) -> None:
    x = c.x(0, "cl")
    types: dict[str, FixedType] = {}
    params = {"weight": _quantized(c, kernel, "kernel_quantizer", "weight", types)}
    if bias is not None:
        params["bias"] = _quantized(c, bias, "bias_quantizer", "bias", types)
    y = c.node("dense", [x], "cl", params=params, types=types)
    activation(c, c.cfg.get("activation"), y, "cl")


def _conv_geometry(c: _Call, k: list[int], in_sp: Shape) -> dict[str, Any]:
    nd = len(k)
    if c.cfg.get("data_format", "channels_last") != "channels_last":
        raise c.refuse("data_format='channels_first'", "save the model with channels_last layers")
    strides = _tuple(c.cfg.get("strides", 1), nd)
    dil = _tuple(c.cfg.get("dilation_rate", 1), nd)
    pad = str(c.cfg.get("padding", "valid")).lower()
    if pad == "valid":
        pads = [0] * (2 * nd)
    elif pad == "same":
        pads = same_pads(in_sp, k, strides, dil, "SAME_UPPER")
    elif pad == "causal" and nd == 1:
        pads = [(k[0] - 1) * dil[0], 0]
    else:
        raise c.refuse(f"padding={pad!r}", "use 'valid' or 'same'")
    return {"strides": strides, "pads": pads, "dilations": dil}


def _tuple(v: Any, n: int) -> list[int]:
    return [int(e) for e in v] if isinstance(v, (list, tuple)) else [int(v)] * n


def _conv_weight(kernel: np.ndarray) -> np.ndarray:
    """Keras ``(*k, cin, cout)`` -> IR ``(cout, cin, *k)``."""
    nd = kernel.ndim - 2
    return np.ascontiguousarray(kernel.transpose(nd + 1, nd, *range(nd)))


def _conv(c: _Call) -> None:
    kernel = c.weight("kernel")
    bias = c.weight("bias") if c.cfg.get("use_bias", True) else None
    _conv_from(c, kernel, bias)


def _folded_batchnorm(c: _Call) -> tuple[np.ndarray, np.ndarray]:
    """QConv2DBatchnorm / QDenseBatchnorm: the batchnorm folded into kernel and bias *before*
    quantization, in float32 from the moving statistics, as QKeras's inference does."""
    f32 = np.float32
    var = c.weight("moving_variance").astype(f32)
    inv = f32(1) / np.sqrt(var + f32(c.cfg.get("epsilon", 1e-3)))
    if c.cfg.get("scale", True):
        inv = inv * c.weight("gamma").astype(f32)
    bias = c.weight("bias").astype(f32) if c.cfg.get("use_bias", True) else f32(0)
    beta = c.weight("beta").astype(f32) if c.cfg.get("center", True) else f32(0)
    folded_bias = inv * (bias - c.weight("moving_mean").astype(f32)) + beta
    folded_kernel = inv * c.weight("kernel").astype(f32)
    return folded_kernel.astype(np.float64), folded_bias.astype(np.float64)


def _qconv_batchnorm(c: _Call) -> None:
    _conv_from(c, *_folded_batchnorm(c))


def _qdense_batchnorm(c: _Call) -> None:
    _dense_from(c, *_folded_batchnorm(c))


def _conv_from(c: _Call, kernel: np.ndarray, bias: np.ndarray | None) -> None:
    x = c.x(0, "cf")
    types: dict[str, FixedType] = {}
    kernel = _quantized(c, kernel, "kernel_quantizer", "weight", types)
    nd = kernel.ndim - 2
    k = list(kernel.shape[:nd])
    attrs = _conv_geometry(c, k, c.s.st.shapes[x][1:])
    groups = int(c.cfg.get("groups", 1))
    if groups != 1:
        attrs["group"] = groups
    params = {"weight": _conv_weight(kernel)}
    if bias is not None:
        params["bias"] = _quantized(c, bias, "bias_quantizer", "bias", types)
    y = c.node("conv", [x], "cf", attrs=attrs, params=params, types=types)
    activation(c, c.cfg.get("activation"), y, "cf")


def _conv_transpose(c: _Call) -> None:
    """Conv1D/2DTranspose: Keras ``(*k, out, in)`` kernels are ONNX ConvTranspose weights
    ``(in, out, *k)`` (both are the gradient of a conv, no flip); pads and output padding
    are chosen so the output has Keras's length (``in * stride`` for 'same',
    ``in * stride + max(k - stride, 0)`` for 'valid')."""
    x = c.x(0, "cf")
    types: dict[str, FixedType] = {}
    kernel = _quantized(c, c.weight("kernel"), "kernel_quantizer", "weight", types)
    nd = kernel.ndim - 2
    k = list(kernel.shape[:nd])
    if c.cfg.get("data_format", "channels_last") != "channels_last":
        raise c.refuse("data_format='channels_first'", "save the model with channels_last layers")
    strides = _tuple(c.cfg.get("strides", 1), nd)
    dil = _tuple(c.cfg.get("dilation_rate", 1), nd)
    pad = str(c.cfg.get("padding", "valid")).lower()
    if pad not in ("valid", "same"):
        raise c.refuse(f"padding={pad!r}", "use 'valid' or 'same'")
    if c.cfg.get("output_padding") is not None:
        raise c.refuse("an explicit output_padding", "leave output_padding unset")
    begin, end, out_pad = [], [], []
    for n_in, kk, s, d in zip(c.s.st.shapes[x][1:], k, strides, dil, strict=True):
        k_eff = (kk - 1) * d + 1
        want = n_in * s if pad == "same" else n_in * s + max(k_eff - s, 0)
        full = s * (n_in - 1) + k_eff  # ONNX's length without pads
        total = max(full - want, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
        out_pad.append(max(want - full, 0))
    attrs = {"strides": strides, "pads": begin + end, "output_padding": out_pad, "dilations": dil}
    params = {"weight": np.ascontiguousarray(kernel.transpose(nd + 1, nd, *range(nd)))}
    if c.cfg.get("use_bias", True):
        params["bias"] = _quantized(c, c.weight("bias"), "bias_quantizer", "bias", types)
    y = c.node("conv_transpose", [x], "cf", attrs=attrs, params=params, types=types)
    activation(c, c.cfg.get("activation"), y, "cf")


def _recurrent(c: _Call) -> None:
    """Keras LSTM / GRU (forward, default activations): unrolled over the model's sequence
    length by :mod:`lightspeed.ops.recurrent`, the weights reordered to ONNX's gate order."""
    from lightspeed.ops.recurrent import Emitter, gru_steps, lstm_steps

    cfg, kind = c.cfg, c.layer.cls
    want_rec = "sigmoid"
    if cfg.get("activation", "tanh") != "tanh" or cfg.get("recurrent_activation") != want_rec:
        raise c.refuse(
            f"activation {cfg.get('activation')!r} / recurrent_activation "
            f"{cfg.get('recurrent_activation')!r}",
            "use activation='tanh' and recurrent_activation='sigmoid' (the defaults)",
        )
    for key in ("go_backwards", "stateful", "return_state"):
        if cfg.get(key):
            raise c.refuse(f"{key}=True", f"set {key}=False")
    x = c.x(0, "cl")
    shape = c.s.st.shapes[x]
    if len(shape) != 2:
        raise c.refuse(f"an input of shape {list(shape)}", "feed (timesteps, features)")
    kernel, rec = c.weight("kernel"), c.weight("recurrent_kernel")
    h = rec.shape[0]
    bias = c.weight("bias") if cfg.get("use_bias", True) else None
    e = Emitter(c.s.st, c.name)
    if kind == "LSTM":
        order = np.r_[0:h, 3 * h : 4 * h, h : 2 * h, 2 * h : 3 * h]  # Keras i,f,c,o -> i,o,f,c
        b = np.zeros(4 * h) if bias is None else bias.reshape(-1)[order]
        hs, _ = lstm_steps(e, x, shape, kernel[:, order].T, rec[:, order].T, b, h)
    else:  # GRU: z, r, h in both; reset_after (TF2's default) is ONNX's linear_before_reset
        after = bool(cfg.get("reset_after", True))
        if bias is None:
            wb = rb = np.zeros(3 * h)
        elif after:
            wb, rb = bias.reshape(2, 3 * h)
        else:
            wb, rb = bias.reshape(-1), np.zeros(3 * h)
        hs = gru_steps(e, x, shape, kernel.T, rec.T, wb, rb, h, int(after))
    if cfg.get("return_sequences", False):
        rows = [e.node("reshape", [v], {"shape": [1, h]}) for v in hs]
        out = e.node("concat", rows, {"axis": 1}) if len(rows) > 1 else rows[0]
    else:
        out = hs[-1]
    c.set_out(out, "cl")


def _depthwise_weight(dk: np.ndarray) -> np.ndarray:
    """Keras ``(*k, cin, mult)`` -> IR ``(cin*mult, 1, *k)`` (output channel = c*mult + m)."""
    nd = dk.ndim - 2
    k = dk.shape[:nd]
    flat = dk.reshape(*k, -1)  # (*k, cin*mult), channel-major
    return np.ascontiguousarray(flat.transpose(nd, *range(nd)))[:, None]


def _depthwise(c: _Call, suffix: str = "", bias: bool = True) -> str:
    x = c.x(0, "cf")
    types: dict[str, FixedType] = {}
    dk = _quantized(c, c.weight("depthwise_kernel"), "depthwise_quantizer", "weight", types)
    nd = dk.ndim - 2
    attrs = _conv_geometry(c, list(dk.shape[:nd]), c.s.st.shapes[x][1:])
    attrs["group"] = int(dk.shape[nd])
    params = {"weight": _depthwise_weight(dk)}
    if bias and c.cfg.get("use_bias", True):
        params["bias"] = _quantized(c, c.weight("bias"), "bias_quantizer", "bias", types)
    return c.node("conv", [x], "cf", suffix, attrs=attrs, params=params, types=types)


def _depthwise_layer(c: _Call) -> None:
    activation(c, c.cfg.get("activation"), _depthwise(c), "cf")


def _separable(c: _Call) -> None:
    mid = _depthwise(c, "depthwise", bias=False)
    types: dict[str, FixedType] = {}
    pk = _quantized(c, c.weight("pointwise_kernel"), "pointwise_quantizer", "weight", types)
    params = {"weight": _conv_weight(pk)}
    if c.cfg.get("use_bias", True):
        params["bias"] = _quantized(c, c.weight("bias"), "bias_quantizer", "bias", types)
    y = c.node("conv", [mid], "cf", "pointwise", params=params, types=types)
    activation(c, c.cfg.get("activation"), y, "cf")


def _batchnorm(c: _Call) -> None:
    axis = c.cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    rank = len(c.kshape())
    if not isinstance(axis, int) or axis not in (-1, rank):
        raise c.refuse(f"axis={axis}", "normalize the last (channel) axis")
    eps = float(c.cfg.get("epsilon", 1e-3))
    mean, var = c.weight("moving_mean"), c.weight("moving_variance")
    gamma = c.weight("gamma") if c.cfg.get("scale", True) else np.ones_like(mean)
    beta = c.weight("beta") if c.cfg.get("center", True) else np.zeros_like(mean)
    s = gamma / np.sqrt(var + eps)
    b = beta - mean * s
    src, lay = c.s.tensors[c.ins[0]]
    prod = next((n for n in reversed(c.s.st.nodes) if src in n.outputs), None)
    if lay == "cl" and rank > 1 and not (prod is not None and prod.op == "dense"):
        lay = "cf"  # a standalone batchnorm scales the first (channel) axis
    x = c.x(0, lay)
    shape = c.s.st.shapes[x]
    cshape = (-1,) + (1,) * (len(shape) - 1) if lay == "cf" else (1,) * (len(shape) - 1) + (-1,)
    params = {
        "scale": np.broadcast_to(s.reshape(cshape), shape).copy(),
        "shift": np.broadcast_to(b.reshape(cshape), shape).copy(),
    }
    c.node(
        "affine", [x], lay, attrs={"onnx_op": "BatchNormalization", "origin": c.name}, params=params
    )


def _layernorm(c: _Call) -> None:
    """LayerNormalization / RMSNormalization over the last (feature) axis."""
    axis = c.cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    rank = len(c.kshape())
    if not isinstance(axis, int) or axis not in (-1, rank):
        raise c.refuse(
            f"axis={axis}", "normalize the last (feature) axis only (axis=-1), the one axis "
            "lightspeed's layernorm/rmsnorm reduce over"
        )  # fmt: skip
    params: dict[str, np.ndarray] = {}
    if c.layer.cls == "RMSNormalization":
        op, eps = "rmsnorm", c.cfg.get("epsilon", 1e-6)
        params["weight"] = c.weight("scale")
    else:
        if c.cfg.get("rms_scaling", False):
            raise c.refuse(
                "rms_scaling=True (deprecated in Keras: x / sqrt(var(x) + eps), not centred)",
                "use keras.layers.RMSNormalization",
            )
        op, eps = "layernorm", c.cfg.get("epsilon", 1e-3)
        if c.cfg.get("scale", True):
            params["weight"] = c.weight("gamma")
        if c.cfg.get("center", True):
            params["bias"] = c.weight("beta")
    eps = 1e-7 if eps is None else float(eps)  # keras.config.epsilon() when None
    c.node(op, [c.x(0, "cl")], "cl", attrs={"epsilon": eps}, params=params)


def _pool(c: _Call) -> None:
    x = c.x(0, "cf")
    in_sp = c.s.st.shapes[x][1:]
    nd = len(in_sp)
    k = _tuple(c.cfg.get("pool_size", 2), nd)
    strides = _tuple(c.cfg.get("strides") or k, nd)
    pad = str(c.cfg.get("padding", "valid")).lower()
    pads = (
        [0] * (2 * nd) if pad == "valid" else same_pads(in_sp, k, strides, [1] * nd, "SAME_UPPER")
    )
    if c.cfg.get("data_format", "channels_last") != "channels_last":
        raise c.refuse("data_format='channels_first'", "save the model with channels_last layers")
    op = "maxpool" if c.layer.cls.startswith("Max") else "avgpool"
    attrs: dict[str, Any] = {"kernel_shape": k, "strides": strides, "pads": pads}
    if op == "avgpool":
        if any(pads):
            raise c.refuse(
                "padding='same' with a partial window (Keras averages over the valid part only)",
                "use padding='valid' or an input size divisible by the pool size",
            )
        attrs["count_include_pad"] = 1
    c.node(op, [x], "cf", attrs=attrs)


def _global_pool(c: _Call) -> None:
    x = c.x(0, "cf")
    shape = c.s.st.shapes[x]
    if c.layer.cls.startswith("GlobalMax"):
        sp = list(shape[1:])
        y = c.node("maxpool", [x], "cf", "pool", attrs={"kernel_shape": sp, "strides": sp})
    else:
        y = c.node("global_avgpool", [x], "cf", "pool")
    if not c.cfg.get("keepdims", False):
        c.node("reshape", [y], "cl", attrs={"shape": [shape[0]]})


def _flatten(c: _Call) -> None:
    if len(c.kshape()) == 1:
        c.set_out(c.x(0), "cl")
        return
    c.node("flatten", [c.x(0, "cl")], "cl")


def _reshape(c: _Call) -> None:
    target = [int(v) for v in c.cfg["target_shape"]]
    c.node("reshape", [c.x(0, "cl")], "cl", attrs={"shape": target})


def _permute(c: _Call) -> None:
    perm = [int(d) - 1 for d in c.cfg["dims"]]
    c.node("transpose", [c.x(0, "cl")], "cl", attrs={"perm": perm})


def _identity(c: _Call) -> None:
    name, lay = c.s.tensors[c.ins[0]]
    c.s.tensors[c.out_key] = (name, lay)


def _merge_inputs(c: _Call) -> tuple[list[str], str]:
    lay = c.layout(0)
    return [c.x(i, lay) for i in range(len(c.ins))], lay


_MERGE = {"Add": "add", "Subtract": "sub", "Multiply": "mul", "Maximum": "max", "Minimum": "min"}


def _merge(c: _Call) -> None:
    xs, lay = _merge_inputs(c)
    if c.layer.cls == "Subtract" and len(xs) != 2:
        raise c.refuse(f"{len(xs)} inputs", "Subtract takes exactly two")
    c.node(_MERGE[c.layer.cls], xs, lay)


def _average(c: _Call) -> None:
    from lightspeed.ops.registry import all_ops

    xs, lay = _merge_inputs(c)
    if "mean" in all_ops():
        c.node("mean", xs, lay)
        return
    total = c.node("add", xs, lay, "sum")
    shape = c.s.st.shapes[total]
    n = len(xs)
    c.node("affine", [total], lay, attrs={"onnx_op": "Average", "origin": c.name},
           params={"scale": np.full(shape, 1.0 / n), "shift": np.zeros(shape)})  # fmt: skip


def _concat(c: _Call) -> None:
    rank = len(c.kshape())
    axis = int(c.cfg.get("axis", -1))
    axis = axis + rank if axis < 0 else axis - 1  # non-batch Keras axis
    xs, lay = _merge_inputs(c)
    if lay == "cf" and rank > 1:
        axis = 0 if axis == rank - 1 else axis + 1
    c.node("concat", xs, lay, attrs={"axis": axis + 1})


def _relu_layer(c: _Call) -> None:
    x, lay = c.x(0), c.layout(0)
    mx, slope = c.cfg.get("max_value"), float(c.cfg.get("negative_slope", 0.0) or 0.0)
    if float(c.cfg.get("threshold", 0.0) or 0.0) != 0.0:
        raise c.refuse("threshold != 0", "use ReLU() without a threshold")
    if mx is not None and slope:
        raise c.refuse("max_value together with negative_slope", "use one of them")
    if mx is not None:
        c.node("clip", [x], lay, attrs={"min": 0.0, "max": float(mx)})
    elif slope:
        c.node("leaky_relu", [x], lay, attrs={"alpha": slope})
    else:
        c.node("relu", [x], lay)


def _leaky_relu(c: _Call) -> None:
    alpha = c.cfg.get("negative_slope", c.cfg.get("alpha", 0.3))  # the layer's default in 2 and 3
    c.node("leaky_relu", [c.x(0)], c.layout(0), attrs={"alpha": float(alpha)})


def _prelu(c: _Call) -> None:
    a = c.weight("alpha")
    if a.size and not np.all(a == a.flat[0]):
        raise c.refuse(
            "a PReLU with different slopes per element",
            "train it with shared_axes so one slope is shared",
        )
    c.node(
        "leaky_relu", [c.x(0)], c.layout(0), attrs={"alpha": float(a.flat[0]) if a.size else 0.0}
    )


def _elu(c: _Call) -> None:
    c.node("elu", [c.x(0)], c.layout(0), attrs={"alpha": float(c.cfg.get("alpha", 1.0))})


def _softmax_layer(c: _Call) -> None:
    axis = c.cfg.get("axis", -1)
    rank = len(c.kshape())
    if axis not in (-1, rank, [-1], [rank]):
        raise c.refuse(f"axis={axis}", "apply softmax over the last axis")
    activation(c, "softmax", c.x(0), c.layout(0))


def _activation_layer(c: _Call) -> None:
    activation(c, c.cfg.get("activation"), c.x(0), c.layout(0))


def _qactivation(c: _Call) -> None:
    activation(c, c.cfg.get("activation"), c.x(0), c.layout(0))


def _upsampling(c: _Call) -> None:
    x = c.x(0, "cf")
    nd = len(c.s.st.shapes[x]) - 1
    size = _tuple(c.cfg.get("size", 2), nd)
    interp = str(c.cfg.get("interpolation", "nearest"))
    if interp == "bilinear":  # tf.image.resize: half-pixel centres, edges clamped
        attrs = {"scales": [1, *size], "ctm": "half_pixel"}
        c.node("resize_linear", [x], "cf", attrs=attrs)
        return
    if interp != "nearest":
        raise c.refuse(f"interpolation={interp!r}", "use interpolation='nearest' or 'bilinear'")
    c.node("resize", [x], "cf", attrs={"mode": "nearest", "scales": [1, *size]})


def _spatial_pairs(c: _Call, key: str, nd: int) -> list[int]:
    """ZeroPadding/Cropping amounts as (begin..., end...) per spatial axis."""
    v = c.cfg.get(key, 1)
    if isinstance(v, int):
        pairs = [(v, v)] * nd
    elif nd == 1:
        pairs = [(int(v[0]), int(v[1]))] if len(v) == 2 else [(int(v[0]), int(v[0]))]
    else:
        pairs = [(int(e), int(e)) if isinstance(e, int) else (int(e[0]), int(e[1])) for e in v]
    return [p[0] for p in pairs] + [p[1] for p in pairs]


def _zero_padding(c: _Call) -> None:
    x = c.x(0, "cf")
    nd = len(c.s.st.shapes[x]) - 1
    p = _spatial_pairs(c, "padding", nd)
    pads = [0, *p[:nd], 0, *p[nd:]]  # channel axis unpadded
    c.node("pad", [x], "cf", attrs={"pads": pads, "mode": "constant", "value": 0.0})


def _cropping(c: _Call) -> None:
    x = c.x(0, "cf")
    shape = c.s.st.shapes[x]
    nd = len(shape) - 1
    p = _spatial_pairs(c, "cropping", nd)
    starts = [0, *p[:nd]]
    ends = [shape[0], *[shape[1 + i] - p[nd + i] for i in range(nd)]]
    c.node("slice", [x], "cf", attrs={"starts": starts, "ends": ends, "axes": list(range(nd + 1))})


def _qbatchnorm(c: _Call) -> None:
    for key in ("gamma_quantizer", "beta_quantizer", "mean_quantizer", "variance_quantizer"):
        if c.cfg.get(key):
            raise c.refuse(
                f"QBatchNormalization with {key}",
                "fold the batchnorm into the layer before it (QConv2DBatchnorm/QDenseBatchnorm) "
                "or use a float BatchNormalization",
            )
    _batchnorm(c)


_CONVERTERS: dict[str, Callable[[_Call], None]] = {
    "Dense": _dense, "QDense": _dense,
    "Conv1D": _conv, "Conv2D": _conv, "QConv1D": _conv, "QConv2D": _conv,
    "QConv2DBatchnorm": _qconv_batchnorm, "QDenseBatchnorm": _qdense_batchnorm,
    "DepthwiseConv1D": _depthwise_layer, "DepthwiseConv2D": _depthwise_layer,
    "QDepthwiseConv2D": _depthwise_layer,
    "SeparableConv1D": _separable, "SeparableConv2D": _separable,
    "QSeparableConv1D": _separable, "QSeparableConv2D": _separable,
    "BatchNormalization": _batchnorm, "QBatchNormalization": _qbatchnorm,
    "LayerNormalization": _layernorm, "RMSNormalization": _layernorm,
    "MaxPooling1D": _pool, "MaxPooling2D": _pool, "AveragePooling1D": _pool,
    "AveragePooling2D": _pool, "MaxPool1D": _pool, "MaxPool2D": _pool, "AvgPool1D": _pool,
    "AvgPool2D": _pool,
    "GlobalMaxPooling1D": _global_pool, "GlobalMaxPooling2D": _global_pool,
    "GlobalAveragePooling1D": _global_pool, "GlobalAveragePooling2D": _global_pool,
    "GlobalMaxPool1D": _global_pool, "GlobalMaxPool2D": _global_pool,
    "GlobalAvgPool1D": _global_pool, "GlobalAvgPool2D": _global_pool,
    "Flatten": _flatten, "Reshape": _reshape, "Permute": _permute,
    "Dropout": _identity, "SpatialDropout1D": _identity, "SpatialDropout2D": _identity,
    "GaussianNoise": _identity, "GaussianDropout": _identity, "AlphaDropout": _identity,
    "ActivityRegularization": _identity,
    "Add": _merge, "Subtract": _merge, "Multiply": _merge, "Maximum": _merge, "Minimum": _merge,
    "Average": _average, "Concatenate": _concat,
    "Activation": _activation_layer, "QActivation": _qactivation,
    "ReLU": _relu_layer, "LeakyReLU": _leaky_relu, "PReLU": _prelu, "ELU": _elu,
    "Softmax": _softmax_layer,
    "UpSampling1D": _upsampling, "UpSampling2D": _upsampling,
    "ZeroPadding1D": _zero_padding, "ZeroPadding2D": _zero_padding,
    "Cropping1D": _cropping, "Cropping2D": _cropping,
    "Conv1DTranspose": _conv_transpose, "Conv2DTranspose": _conv_transpose,
    "LSTM": _recurrent, "GRU": _recurrent,
}  # fmt: skip

# what to tell users of layers lightspeed does not convert
_ADVICE = {
    "SimpleRNN": "recurrent layers are not supported yet; use Conv1D over the sequence",
    "Bidirectional": "recurrent layers are not supported yet; use Conv1D over the sequence",
    "MultiHeadAttention": "Keras attention is not supported yet; PyTorch nn.MultiheadAttention "
    "(lightspeed.load) and attention written out as MatMul/Softmax in ONNX are",
    "Attention": "attention is not supported yet",
    "Embedding": "embeddings are not supported; feed one-hot or dense features",
    "Lambda": "Lambda layers hold Python code lightspeed cannot read; replace them with Keras layers",
    "Conv3D": "3-D convolutions are not supported; use Conv2D",
    "FixedPointQuantizer": "this is an HGQ (version 1) proxy model; export it from HGQ2, or "
    "convert it to QONNX",
    "BinaryDense": "BinaryDense is a custom layer; retrain with QKeras QDense(kernel_quantizer="
    "binary())",
    "TernaryDense": "TernaryDense is a custom layer; retrain with QKeras QDense(kernel_quantizer="
    "ternary())",
    "GarNet": "GarNet is a custom layer without a lightspeed op",
    "GarNetStack": "GarNet is a custom layer without a lightspeed op",
    "QDepthwiseConv2DBatchnorm": "fold the batchnorm yourself (QKeras' "
    "utils.model_save_quantized_weights) or train QDepthwiseConv2D + QActivation",
}


def import_keras(source: Any, weights: str | Path | None = None, input_shape: Any = None) -> Graph:
    """Import a Keras / QKeras model (file path or live model) into a float IR graph."""
    model = read_keras(source, weights)
    return convert(model, input_shape)


def convert(model: KModel, input_shape: Any = None) -> Graph:
    """A :class:`KModel` as a float IR graph (inputs and outputs in Keras's layout)."""
    s = _State(ImportState(), model)
    by_name = {layer.name: layer for layer in model.layers}
    inputs: dict[str, Shape] = {}
    given = _given_shapes(input_shape, model)
    for key in model.inputs:
        layer = by_name.get(key.split(":")[0])
        if layer is None or layer.cls != "InputLayer":
            raise ModelError(f"model input {key.split(':')[0]!r} is not an InputLayer")
        shape = given.get(layer.name) or _input_shape(layer)
        inputs[layer.name] = shape
        s.st.shapes[layer.name] = shape
        s.tnames.add(layer.name)
        s.tensors[f"{layer.name}:0:0"] = (layer.name, "cl")
    for layer in _ordered(model):
        if layer.cls == "InputLayer":
            continue
        conv = _CONVERTERS.get(layer.cls)
        if layer.module.startswith(("hgq", "HGQ")):  # HGQ2 reuses QKeras class names (QDense...)
            raise UnsupportedOpError(
                f"Keras layer {layer.cls} ({layer.name!r}) is an HGQ2 layer ({layer.module}); "
                "load the model with HGQ2 installed so lightspeed's HGQ2 importer reads it"
            )
        if conv is None:
            raise _unsupported_layer(layer)
        for i, ins in enumerate(layer.calls):
            missing = [k for k in ins if k not in s.tensors]
            if missing:
                raise ModelError(
                    f"Keras layer {layer.name!r} reads {missing[0]!r}, which no layer produces"
                )
            c = _Call(s, layer, list(ins), f"{layer.name}:{i}:0")
            if not ins:
                raise ModelError(f"Keras layer {layer.name!r} has no inputs")
            conv(c)
    outputs = []
    for key in model.outputs:
        if key not in s.tensors:
            raise ModelError(f"model output {key!r} is never computed")
        c = _Call(s, by_name[key.split(":")[0]], [key], key)
        out = c.x(0, "cl")
        outputs.append(out)
    graph = Graph(name=model.name, inputs=inputs, outputs=outputs, nodes=s.st.nodes)
    _rename_outputs(graph, [k.split(":")[0] for k in model.outputs])
    return passes.standard(graph)


def _unsupported_layer(layer: KLayer) -> UnsupportedOpError:
    if layer.cls in ("Functional", "Sequential", "Model"):
        return UnsupportedOpError(
            f"Keras layer {layer.name!r} is a nested model; flatten it into one functional model"
        )
    advice = _ADVICE.get(
        layer.cls, "replace it with one of the supported layers (docs/frontends.md)"
    )
    return UnsupportedOpError(
        f"Keras layer {layer.cls} ({layer.name!r}) is not supported: {advice}"
    )


def _ordered(model: KModel) -> list[KLayer]:
    """Layers in an order where every input exists (configs list them so, but check)."""
    done = {k for k in model.inputs}
    pending = list(model.layers)
    out: list[KLayer] = []
    while pending:
        progress = False
        for layer in list(pending):
            keys = [k for call in layer.calls for k in call]
            if layer.cls == "InputLayer" or all(k in done for k in keys):
                out.append(layer)
                pending.remove(layer)
                done.update(f"{layer.name}:{i}:0" for i in range(max(len(layer.calls), 1)))
                progress = True
        if not progress:
            names = ", ".join(layer.name for layer in pending[:5])
            raise ModelError(f"Keras layers {names} read tensors that no layer produces")
    return out


def _input_shape(layer: KLayer) -> Shape:
    shape = layer.config.get("batch_input_shape") or layer.config.get("batch_shape")
    if shape is None:
        raise ShapeError(f"Keras input {layer.name!r} declares no shape; pass input_shape")
    dims = list(shape[1:])
    if not dims or any(d is None for d in dims):
        raise ShapeError(
            f"Keras input {layer.name!r} has shape {shape[1:]} with unknown dims; pass "
            "--input-shape (without the batch axis)"
        )
    return tuple(int(d) for d in dims)


def _given_shapes(spec: Any, model: KModel) -> dict[str, Shape]:
    if spec is None:
        return {}
    from lightspeed.frontends.onnx import parse_input_shape

    return parse_input_shape(spec, [k.split(":")[0] for k in model.inputs])


def _rename_outputs(graph: Graph, wanted: list[str]) -> None:
    """Graph outputs carry their Keras layer names (an inner tensor of that name is renamed)."""

    def rename(old: str, new: str) -> None:
        for n in graph.nodes:
            n.inputs = [new if t == old else t for t in n.inputs]
            n.outputs = [new if t == old else t for t in n.outputs]
        graph.outputs = [new if t == old else t for t in graph.outputs]

    taken = set(graph.inputs) | {t for n in graph.nodes for t in n.outputs}
    for i, want in enumerate(wanted):
        have = graph.outputs[i]
        if have == want or graph.outputs.count(have) > 1 or have in graph.inputs:
            continue
        if want in graph.inputs or want in graph.outputs:
            continue
        if want in taken:
            spare, k = f"{want}_inner", 1
            while spare in taken:
                spare, k = f"{want}_inner{k}", k + 1
            rename(want, spare)
            taken.add(spare)
        rename(have, want)
        taken.add(want)


__all__ = ["KModel", "import_keras", "is_keras_source", "read_keras"]
