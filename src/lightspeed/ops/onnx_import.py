"""What an op module needs to import ONNX nodes: the importer's state and small helpers.

An op module lists its ONNX handlers in ``Op.onnx_import`` (ONNX op type ->
handler). A handler gets ``(onnx node, state, attrs, clean node name)`` and
emits IR nodes with :meth:`ImportState.emit`. The driver that walks an ONNX
file lives in :mod:`lightspeed.frontends.onnx`; constant folding, aliasing
and graph rewrites (:mod:`lightspeed.ir.passes`) are not a handler's job.

Constant operands of scale/shift form (BatchNorm, ``Mul``/``Add`` by a
constant) are emitted as an ``affine`` node (full-shape constants);
:func:`lightspeed.ir.passes.fold_affine` folds it into the layer before it or
turns it into a per-channel ``batchnorm``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightspeed.errors import ModelError, ShapeError, UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.ir.graph import Node, Shape

BATCH = (1 << 40) + 7  # sentinel for the (unknown) batch size inside folded shape tensors

# advice for ONNX ops no op module imports (consulted only for unregistered types)
ADVICE = {
    "ConvTranspose": "a strided Conv model (transposed convolution is not supported yet)",
    "Pad": "the pads attribute of Conv/MaxPool/AveragePool",
    "Gelu": "Relu, LeakyRelu or Tanh",
    "Silu": "Relu or Sigmoid",
    "HardSwish": "HardSigmoid or Relu",
    "Exp": "Softmax (last axis)",
    "LogSoftmax": "Softmax (last axis)",
    "Sqrt": "BatchNormalization with constant statistics",
    "Pow": "Mul",
    "ReduceSum": "GlobalAveragePool",
    "ReduceMax": "MaxPool or GlobalMaxPool",
    "LSTM": "nothing yet: recurrent layers (LSTM) are not supported",
    "GRU": "nothing yet: recurrent layers (GRU) are not supported",
    "RNN": "nothing yet: recurrent layers (RNN) are not supported",
    "Resize": "Concat or Reshape (upsampling is not supported yet)",
    "Upsample": "Concat or Reshape (upsampling is not supported yet)",
    "InstanceNormalization": "BatchNormalization with constant statistics",
    "LayerNormalization": "nothing yet: LayerNorm is not supported (BatchNorm folds only constant statistics)",
    "Gather": "Reshape/Transpose (Gather is only supported on constants)",
    "Slice": "Reshape/Transpose (Slice is only supported on constants)",
    "Split": "separate Conv/Gemm layers (Split is only supported on constants)",
    "QuantizeLinear": "QONNX Quant with a power-of-two scale",
    "DequantizeLinear": "QONNX Quant with a power-of-two scale",
    "Trunc": "QONNX Quant with rounding_mode FLOOR",
    "Einsum": "MatMul with a constant weight",
    "Abs": "Relu",
    "Neg": "Mul by a constant",
    "DepthToSpace": "nothing yet: DepthToSpace (pixel shuffle) is not supported",
    "SpaceToDepth": "nothing yet: SpaceToDepth is not supported; a strided Conv downsamples",
}


# handled by the importer itself (constants, shapes, aliases), not by an op module
STRUCTURAL = ("Cast", "Constant", "Dropout", "Identity", "Shape")


def supported_onnx_types() -> list[str]:
    """Every ONNX op type lightspeed imports, derived from the op registry."""
    from lightspeed.ops.registry import onnx_handlers

    return sorted({*onnx_handlers(), *STRUCTURAL})


def unsupported(op_type: str, node_name: str, why: str = "") -> UnsupportedOpError:
    """The error for an ONNX node lightspeed cannot import, with the nearest supported form.

    A registered op type in an unsupported form says which form; an unknown
    type gets advice where there is some, else the derived list of supported types.
    """
    known = op_type in supported_onnx_types()
    if known:
        return UnsupportedOpError(
            f"node {node_name!r}: ONNX {op_type} is supported, but not in this form"
            f"{f' ({why})' if why else ''}"
        )
    detail = f" ({why})" if why else ""
    if "." in op_type:  # domain.op: a custom op, never one of ours whatever its short name
        detail = "" if why == "custom domain" else detail
        return UnsupportedOpError(
            f"node {node_name!r}: {op_type} is a custom-domain op{detail}; lightspeed reads "
            "standard ONNX ops plus QONNX Quant/BipolarQuant: export the model without it"
        )
    alt = ADVICE.get(op_type, f"one of the supported ops ({', '.join(supported_onnx_types())})")
    if alt.startswith("nothing yet: "):
        return UnsupportedOpError(
            f"node {node_name!r}: ONNX op {op_type}{detail} is not supported yet; "
            f"{alt.removeprefix('nothing yet: ')}"
        )
    return UnsupportedOpError(
        f"node {node_name!r}: ONNX op {op_type}{detail} is not supported; nearest supported: {alt}"
    )


@dataclass
class ImportState:
    """Everything the importer tracks while walking the ONNX graph."""

    consts: dict[str, np.ndarray] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)  # IR shapes of dynamic tensors
    nodes: list[Node] = field(default_factory=list)
    uses: dict[str, int] = field(default_factory=dict)  # consumers (incl. graph outputs)
    qtypes: dict[str, FixedType] = field(default_factory=dict)  # trained type of a constant
    names: set[str] = field(default_factory=set)
    opset: int = 13
    batch: dict[str, int | None] = field(default_factory=dict)  # static batch of each input
    exact: bool = False  # a lightspeed export: fold affine ops only into their own layer
    meta: dict[str, Any] = field(default_factory=dict)  # lightspeed.precision metadata

    def resolve(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def is_const(self, t: str) -> bool:
        return self.resolve(t) in self.consts

    def const(self, t: str) -> np.ndarray:
        return self.consts[self.resolve(t)]

    def unique(self, base: str) -> str:
        name = base or "node"
        i = 1
        while name in self.names:
            name = f"{base}_{i}"
            i += 1
        self.names.add(name)
        return name

    def emit(self, node: Node) -> Node:
        from lightspeed.ops.registry import get_op

        node.name = self.unique(node.name)
        ins = []
        for t in node.inputs:
            if t not in self.shapes:
                raise ModelError(f"node {node.name!r}: input tensor {t!r} is never produced")
            ins.append(self.shapes[t])
        try:
            outs = get_op(node.op).infer_shape(node, ins)
        except ShapeError as exc:
            raise ShapeError(f"node {node.name!r} ({node.op}): {exc}") from None
        for t, s in zip(node.outputs, outs, strict=True):
            self.shapes[t] = tuple(int(d) for d in s)
        self.nodes.append(node)
        return node


Handler = Callable[[Any, ImportState, dict[str, Any], str], None]


def onnx_attrs(onode: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in onode.attribute}


def dyn(st: ImportState, t: str, op: str, name: str) -> str:
    """The IR tensor behind ONNX tensor ``t``, which must be computed (not a constant)."""
    r = st.resolve(t)
    if r not in st.shapes:
        if r in st.consts:
            raise unsupported(op, name, f"constant input {t!r} where a tensor is expected")
        raise ModelError(f"node {name!r} ({op}): input tensor {t!r} is never produced")
    return r


def alias(st: ImportState, out: str, src: str) -> None:
    """``out`` is ``src`` (Identity, Dropout, Cast): no node, the trained type follows."""
    src = st.resolve(src)
    st.alias[out] = src
    st.uses[src] = st.uses.get(src, 0) + st.uses.get(out, 0) - 1
    if src in st.qtypes:
        st.qtypes[out] = st.qtypes[src]


def f64(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def decode_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def opt_const(st: ImportState, onode: Any, i: int) -> np.ndarray | None:
    """Optional constant input ``i`` (None when absent); a computed one is refused."""
    if len(onode.input) > i and onode.input[i]:
        t = onode.input[i]
        if not st.is_const(t):
            raise unsupported(onode.op_type, onode.name, f"input {i} must be a constant")
        return st.const(t)
    return None


def full_const(c: np.ndarray, shape: tuple[int, ...], op: str, name: str) -> np.ndarray:
    """Broadcast a constant operand to the tensor's IR shape (refusing batch-dependent ones)."""
    c = f64(c)
    try:
        b = np.broadcast_shapes(c.shape, (1, *shape))
    except ValueError:
        raise ShapeError(
            f"node {name!r} ({op}): constant {c.shape} does not broadcast to {shape}"
        ) from None
    if b != (1, *shape):
        raise unsupported(op, name, f"constant of shape {c.shape} would grow the tensor {shape}")
    return np.broadcast_to(c, (1, *shape))[0].copy()


def trained(st: ImportState, t: str) -> FixedType | None:
    """The trained type of constant ``t`` (a QONNX Quant folded into it), if any."""
    return st.qtypes.get(st.resolve(t)) if t else None


def set_trained(node: Node, role: str, t: FixedType | None) -> None:
    if t is not None:
        node.types[role] = t


def affine(
    st: ImportState,
    x: str,
    out: str,
    scale: np.ndarray,
    shift: np.ndarray,
    name: str,
    op: str,
    types: dict[str, FixedType] | None = None,
) -> None:
    """Emit ``out = x*scale + shift`` (full-shape constants) for :func:`ir.passes.fold_affine`.

    ``types`` holds the trained types of the constants (``scale``/``shift``: a
    QONNX ``Quant`` on the operand of ``Mul``/``Add``), which folding keeps.
    """
    node = Node(
        name, "affine", [x], [out], attrs={"onnx_op": op, "origin": name},
        params={"scale": f64(scale), "shift": f64(shift)}, types=dict(types or {}),
    )  # fmt: skip
    st.emit(node)


def same_pads(in_sp, k, strides, dil, mode: str) -> list[int]:
    nd = len(k)
    begin, end = [0] * nd, [0] * nd
    for i in range(nd):
        out = -(-in_sp[i] // strides[i])
        total = max((out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - in_sp[i], 0)
        small = total // 2
        begin[i], end[i] = (
            (small, total - small) if mode == "SAME_UPPER" else (total - small, small)
        )
    return begin + end


def pads(a: dict[str, Any], in_sp, k, strides, dil, op: str, name: str) -> list[int]:
    """Explicit pads from ``pads`` or ``auto_pad`` (begin..., end...)."""
    mode = decode_str(a.get("auto_pad", "NOTSET"))
    nd = len(k)
    if mode in ("NOTSET", ""):
        return [int(p) for p in a.get("pads", [0] * (2 * nd))]
    if mode == "VALID":
        return [0] * (2 * nd)
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        return same_pads(in_sp, k, strides, dil, mode)
    raise ModelError(f"node {name!r} ({op}): unknown auto_pad {mode!r}")


def unary(op: str, attrs_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Handler:
    """Handler for an ONNX op that maps to one IR op on one tensor."""

    def handler(onode: Any, st: ImportState, a: dict[str, Any], name: str) -> None:
        x = dyn(st, onode.input[0], onode.op_type, name)
        attrs = attrs_fn(a) if attrs_fn else {}
        st.emit(Node(name, op, [x], [onode.output[0]], attrs=attrs))

    return handler
