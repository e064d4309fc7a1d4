"""Export a quantization-aware PyTorch model to the IR, keeping every trained type.

The model is traced with ``torch.fx`` (quantized layers are leaves); each
layer becomes one IR node whose ``types`` hold all of its roles,
and whose params are the already-quantized (exactly representable) values, so
:func:`to_quantized` needs no calibration and the emulator reproduces the
PyTorch eval-mode outputs bit for bit. Anything that would break that promise
(an unquantized layer, a clip bound off the input grid, an accumulator too
wide for float64) is refused with the reason.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from lightspeed.errors import ConfigError, UnsupportedOpError
from lightspeed.fixed import FixedType, quantize_float
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.nn.layers import QBatchNorm, QClip, QConvNd, QInput, QLeakyReLU, QMacLayer, QReLU
from lightspeed.ops import AutoOptions
from lightspeed.ops.activations import clip_int_bounds, relu_type
from lightspeed.ops.conv import weight_matrix
from lightspeed.ops.mac import linear_precision
from lightspeed.quantize import QuantizedModel, from_trained

# float64 sums integers exactly below 2**53; one bit of margin because torch adds the bias
# after the products, so a partial sum may exceed the accumulator's range by |bias|
_EXACT_BITS = 52
_PASS = (nn.Identity, nn.Dropout)
_LEAVES = (QMacLayer, QBatchNorm, QInput, QReLU, QClip, QLeakyReLU)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _exact(values: np.ndarray, t: FixedType, what: str) -> np.ndarray:
    """Values already quantized in torch must be representable in t (checked, not assumed)."""
    back = quantize_float(values, t, what=what) * t.lsb
    if not np.array_equal(back, values):
        raise ConfigError(
            f"{what}: quantized values are not exact in {t}; this is a bug, please report it"
        )
    return values


def _mac_precision(
    name: str, wmat: np.ndarray, b: np.ndarray | None, x_t: FixedType, w_t: FixedType,
    b_t: FixedType | None, out_t: FixedType | None,
) -> dict[str, FixedType]:  # fmt: skip
    """Weight/bias/result as trained; an exact accumulator by interval analysis."""
    fixed: dict[str, FixedType] = {"weight": w_t, "result": out_t or FixedType(1, 1)}
    if b is not None and b_t is not None:
        fixed["bias"] = b_t
    prec = linear_precision(wmat, b, x_t, fixed, AutoOptions(), (0.0, 0.0))
    if out_t is None:
        prec["result"] = prec["accum"]
    if prec["accum"].width > _EXACT_BITS:
        raise ConfigError(
            f"layer {name!r}: the exact accumulator needs {prec['accum'].width} bits, more than the "
            f"{_EXACT_BITS} that float64 sums exactly here, so PyTorch eval could not match the "
            "emulator; reduce the input, weight or bias widths"
        )
    return prec


class _Exporter:
    def __init__(self, gm: fx.GraphModule, input_shapes: dict[str, tuple[int, ...]]) -> None:
        self.gm = gm
        self.input_shapes = input_shapes
        self.nodes: list[Node] = []
        self.types: dict[str, FixedType | None] = {}  # tensor -> type (None: not yet quantized)
        self.names: dict[fx.Node, str] = {}
        self.input_types: dict[str, FixedType] = {}
        self.graph_inputs: dict[str, tuple[int, ...]] = {}

    def tensor(self, arg: Any, who: str) -> str:
        if not isinstance(arg, fx.Node) or arg not in self.names:
            raise UnsupportedOpError(
                f"{who}: only tensors produced by traced layers are supported as inputs"
            )
        return self.names[arg]

    def typed(self, tensor: str, who: str) -> FixedType:
        t = self.types.get(tensor)
        if t is None:
            raise ConfigError(
                f"layer {who!r} receives the unquantized tensor {tensor!r}; put a QInput (or a quantized "
                "layer/activation) before it so its input has a fixed-point type"
            )
        return t

    def add(self, name: str, op: str, inputs: list[str], out: str, prec: dict[str, FixedType],
            params: dict[str, np.ndarray] | None = None, attrs: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.nodes.append(
            Node(name, op, inputs, [out], dict(attrs or {}), params or {}, dict(prec))
        )
        self.types[out] = prec.get("result", self.types[inputs[0]])

    # -- per module -------------------------------------------------------
    def module(self, n: fx.Node, mod: nn.Module) -> None:
        name = _node_name(str(n.target), mod)
        src = self.tensor(n.args[0], name)
        out = name
        if isinstance(mod, _PASS):
            self.names[n] = src
            return
        if isinstance(mod, QInput):
            if src in self.graph_inputs and self.types[src] is None:
                arg = n.args[0]
                if isinstance(arg, fx.Node) and len(arg.users) != 1:
                    raise ConfigError(f"model input {src!r} is used before its QInput {name!r}")
                self.types[src] = self.input_types[src] = mod.quant.fixed_type
                self.names[n] = src
                return
            t = mod.quant.fixed_type
            self.add(name, "quant", [src], out, {"result": t})
        elif isinstance(mod, QMacLayer):
            self.mac(name, mod, src, out)
        elif isinstance(mod, QBatchNorm):
            x_t = self.typed(src, name)
            sc, sh = (_np(v) for v in mod.quantized_params())
            w_t, b_t = mod.weight_quant.fixed_type, mod.bias_quant.fixed_type
            prec = _mac_precision(name, sc[None, :], sh, x_t, w_t, b_t, _out(mod))
            params = {
                "scale": _exact(sc, w_t, f"{name} scale"),
                "shift": _exact(sh, b_t, f"{name} shift"),
            }
            self.add(name, "batchnorm", [src], out, prec, params)
        elif isinstance(mod, (QReLU, nn.ReLU)):
            x_t = self.typed(src, name)
            self.add(name, "relu", [src], out, {"result": _out(mod) or relu_type(x_t)})
        elif isinstance(mod, (QClip, nn.ReLU6, nn.Hardtanh)):
            lo, hi = (mod.min, mod.max) if isinstance(mod, QClip) else (mod.min_val, mod.max_val)
            self.clip(name, src, out, lo, hi, _out(mod))
        elif isinstance(mod, QLeakyReLU):
            x_t = self.typed(src, name)
            if x_t.width + mod.param_quant.fixed_type.width > _EXACT_BITS:
                raise ConfigError(
                    f"layer {name!r}: x * alpha needs {x_t.width + mod.param_quant.fixed_type.width} "
                    f"bits, more than float64 holds exactly; narrow the input or the alpha type"
                )
            prec = {"param": mod.param_quant.fixed_type, "result": _out(mod) or FixedType(1, 1)}
            self.add(name, "leaky_relu", [src], out, prec, attrs={"alpha": mod.alpha_q()})
        elif isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
            self.maxpool(name, mod, src, out)
        elif isinstance(mod, nn.Flatten):
            self.flatten(name, src, out, mod.start_dim, mod.end_dim)
        else:
            raise UnsupportedOpError(
                f"layer {name!r} ({type(mod).__name__}) has no fixed-point QAT equivalent; use the "
                "lightspeed.nn layers (QLinear, QConv1d/2d, QBatchNorm, QReLU, QClip, QLeakyReLU, QInput) "
                "or lightspeed.nn.convert(model) to turn a float model into one"
            )
        self.names[n] = out

    def mac(self, name: str, mod: QMacLayer, src: str, out: str) -> None:
        x_t = self.typed(src, name)
        wq, bq = mod.quantized_params()
        w = _np(wq)
        b = None if bq is None else _np(bq)
        w_t = mod.weight_quant.fixed_type
        b_t = None if mod.bias_quant is None or b is None else mod.bias_quant.fixed_type
        if isinstance(mod, QConvNd):
            wmat = np.concatenate(
                [weight_matrix(w, mod.groups, g) for g in range(mod.groups)], axis=1
            )
            op, attrs, weight = "conv", mod.onnx_attrs(), w
        else:
            wmat = w.T
            op, attrs, weight = "dense", {}, np.ascontiguousarray(w.T)
        prec = _mac_precision(name, wmat, b, x_t, w_t, b_t, _out(mod))
        params = {"weight": _exact(weight, w_t, f"{name} weights")}
        if b is not None and b_t is not None:
            params["bias"] = _exact(b, b_t, f"{name} bias")
        self.add(name, op, [src], out, prec, params, attrs)

    def clip(self, name: str, src: str, out: str, lo: float | None, hi: float | None,
             out_t: FixedType | None) -> None:  # fmt: skip
        x_t = self.typed(src, name)
        node = Node(name, "clip", [src], [out], {"min": lo, "max": hi})
        lo_i, hi_i = clip_int_bounds(node, x_t)
        for bound, b_int, inside in ((lo, lo_i, lo is not None and lo > x_t.min_value),
                                     (hi, hi_i, hi is not None and hi < x_t.max_value)):  # fmt: skip
            if inside and b_int * x_t.lsb != bound:
                raise ConfigError(
                    f"layer {name!r}: clip bound {bound:g} is not on the grid of its input type {x_t} "
                    f"(step {x_t.lsb:g}); fixed point would clamp at {b_int * x_t.lsb:g} instead. "
                    "Use bounds that are multiples of the input step"
                )
        self.add(name, "clip", [src], out, {"result": out_t or x_t}, attrs={"min": lo, "max": hi})

    def maxpool(self, name: str, mod: nn.Module, src: str, out: str) -> None:
        x_t = self.typed(src, name)
        nd = 1 if isinstance(mod, nn.MaxPool1d) else 2
        tup = lambda v: list(v) if isinstance(v, Sequence) else [int(v)] * nd  # noqa: E731
        if mod.ceil_mode or any(d != 1 for d in tup(mod.dilation)) or mod.return_indices:
            raise UnsupportedOpError(
                f"layer {name!r}: MaxPool with ceil_mode/dilation/indices is not supported"
            )
        stride = mod.stride if mod.stride is not None else mod.kernel_size
        attrs = {
            "kernel_shape": tup(mod.kernel_size),
            "strides": tup(stride),
            "pads": tup(mod.padding) * 2,
        }
        self.add(name, "maxpool", [src], out, {"result": x_t}, attrs=attrs)

    def flatten(self, name: str, src: str, out: str, start: int, end: int) -> None:
        if start != 1 or end != -1:
            raise UnsupportedOpError(f"{name!r}: only flatten(start_dim=1) is supported")
        x_t = self.typed(src, name)
        self.nodes.append(Node(name, "flatten", [src], [out], {}))
        self.types[out] = x_t

    # -- walk -------------------------------------------------------------
    def run(self) -> None:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        single = len(placeholders) == 1 and len(self.input_shapes) == 1
        for p in placeholders:
            # a single input may be renamed by giving input_shape={name: shape}
            tname = next(iter(self.input_shapes)) if single else str(p.target)
            if tname not in self.input_shapes:
                raise ConfigError(f"give input_shape for model input {p.target!r}")
            self.names[p] = tname
            self.types[tname] = None
            self.graph_inputs[tname] = tuple(self.input_shapes[tname])
        for n in self.gm.graph.nodes:
            if n.op == "call_module":
                self.module(n, self.gm.get_submodule(str(n.target)))
            elif n.op in ("call_function", "call_method"):
                self.function(n)
            elif n.op == "output":
                self.outputs = [self.tensor(a, "output") for a in _flatten_args(n.args[0])]
        for name, t in self.types.items():
            if name in self.graph_inputs and t is None:
                raise ConfigError(
                    f"model input {name!r} has no QInput; start the model with QInput(type)"
                )

    def function(self, n: fx.Node) -> None:
        f = n.target
        if f in (torch.flatten, "flatten"):
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
            self.flatten(n.name, self.tensor(n.args[0], n.name), n.name, int(start), int(end))  # type: ignore[arg-type]
            self.names[n] = n.name
            return
        if f in (torch.relu, torch.nn.functional.relu, "relu"):
            src = self.tensor(n.args[0], n.name)
            x_t = self.typed(src, n.name)
            self.add(n.name, "relu", [src], n.name, {"result": relu_type(x_t)})
            self.names[n] = n.name
            return
        what = getattr(f, "__name__", str(f))
        if f is operator.getitem:
            what = "indexing"
        raise UnsupportedOpError(
            f"operation {what!r} ({n.name}) in the model's forward has no exact fixed-point export; "
            "express it with lightspeed.nn layers"
        )


_KIND = {
    "QLinear": "dense",
    "QConv1d": "conv",
    "QConv2d": "conv",
    "QBatchNorm": "batchnorm",
    "QInput": "quant",
}


def _node_name(target: str, mod: nn.Module) -> str:
    """Module path as node name; Sequential indices get the op kind as prefix (dense_0)."""
    name = target.replace(".", "_")
    if name[:1].isdigit():
        kind = _KIND.get(type(mod).__name__, type(mod).__name__.lower().removeprefix("q"))
        name = f"{kind}_{name}"
    return name


def _flatten_args(a: Any) -> list[Any]:
    if isinstance(a, (tuple, list)):
        return [x for v in a for x in _flatten_args(v)]
    return [a]


def _out(mod: nn.Module) -> FixedType | None:
    q = getattr(mod, "output_quant", None)
    return None if q is None else q.fixed_type


def _shapes(input_shape: Any, names: list[str]) -> dict[str, tuple[int, ...]]:
    if isinstance(input_shape, dict):
        return {k: tuple(int(d) for d in v) for k, v in input_shape.items()}
    if input_shape is None:
        raise ConfigError(
            "to_graph needs input_shape (without the batch axis), e.g. (16,) or (1, 28, 28)"
        )
    if len(names) != 1:
        raise ConfigError(f"model has inputs {names}; give input_shape as {{name: shape}}")
    return {names[0]: tuple(int(d) for d in input_shape)}


def export(
    model: nn.Module, input_shape: Any, name: str | None = None
) -> tuple[Graph, dict[str, FixedType]]:
    """The IR of a QAT model in eval mode plus its input types.

    Every node carries its trained types in ``node.types`` (all roles,
    including the exact accumulator) and its quantized params (exact values).
    """
    m = copy.deepcopy(model).eval()
    gm = fx.GraphModule(m, _Tracer().trace(m))
    names = [str(p.target) for p in gm.graph.nodes if p.op == "placeholder"]
    ex = _Exporter(gm, _shapes(input_shape, names))
    ex.run()
    graph = Graph(name or type(model).__name__, ex.graph_inputs, ex.outputs, ex.nodes)
    infer_shapes(graph)
    return graph, ex.input_types


def to_graph(model: nn.Module, input_shape: Any, name: str | None = None) -> Graph:
    """The IR of a QAT model (see :func:`export`; the input types are in :func:`export`'s result)."""
    return export(model, input_shape, name)[0]


def quantized_from_graph(graph: Graph, input_types: dict[str, FixedType]) -> QuantizedModel:
    """A QuantizedModel from a graph whose every node has all its roles in ``node.types``."""
    return from_trained(graph, input_types)


def to_quantized(model: nn.Module, input_shape: Any, name: str | None = None) -> QuantizedModel:
    """Export a QAT model to a :class:`~lightspeed.quantize.QuantizedModel` with its trained types.

    ``q.predict(x)`` equals ``model.eval()(x)`` (float64) bit for bit.
    """
    graph, input_types = export(model, input_shape, name)
    return quantized_from_graph(graph, input_types)
