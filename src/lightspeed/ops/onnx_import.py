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
    "Erf": "Gelu (x*0.5*(1+erf(x/sqrt(2))) as torch writes it is fused into gelu; a lone Erf is not)",
    "Silu": "Relu or Sigmoid",
    "Exp": "Softmax (last axis)",
    "LogSoftmax": "Softmax (last axis)",
    "Sqrt": "BatchNormalization with constant statistics, or LayerNormalization/RMSNormalization "
    "(x / sqrt(mean(x*x) + eps) over the last axis is fused into them)",
    "Pow": "Mul",
    "ReduceSum": "GlobalAveragePool",
    "ReduceMax": "MaxPool or GlobalMaxPool",
    "LSTM": "nothing yet: recurrent layers (LSTM) are not supported",
    "GRU": "nothing yet: recurrent layers (GRU) are not supported",
    "RNN": "nothing yet: recurrent layers (RNN) are not supported",
    "InstanceNormalization": "BatchNormalization with constant statistics",
    "Gather": "Reshape/Transpose (Gather is only supported on constants)",
    "Split": "separate Conv/Gemm layers (Split is only supported on constants)",
    "QuantizeLinear": "QONNX Quant (export with Brevitas' export_qonnx)",
    "Round": "QONNX Quant: a float Round is a quantizer written as arithmetic, as plain "
    "tf2onnx exports QKeras; export QKeras with qonnx.converters.keras.from_keras, or load "
    "the Keras .h5 / arch.json + weights directly",
    "DequantizeLinear": "QONNX Quant (export with Brevitas' export_qonnx)",
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
            "standard ONNX ops plus QONNX Quant/BipolarQuant/Trunc/MultiThreshold and qonnx's "
            "channels-last Conv/MaxPool/BatchNormalization: export the model without it"
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
    # a constant Quant with a float scale: (integer codes, full-shape scale, code type)
    wcodes: dict[str, tuple[np.ndarray, np.ndarray, FixedType]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    opset: int = 13
    batch: dict[str, int | None] = field(default_factory=dict)  # static batch of each input
    exact: bool = False  # a lightspeed export: fold affine ops only into their own layer
    meta: dict[str, Any] = field(default_factory=dict)  # lightspeed.precision metadata
    # constants whose leading axis of 1 stands for the batch (torch's zeros/expand sized by
    # x.shape[0]): the same values for every sample; Shape() of them reports the batch
    batch_consts: set[str] = field(default_factory=set)

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


class OnnxGraph:
    """An ONNX graph's node list that op rewrites edit before import (``Op.onnx_rewrite``).

    Constants are the initializers and ``Constant`` nodes; a rewrite replaces a
    matched group of nodes by one node whose output keeps the group's output name.
    """

    def __init__(self, nodes: list[Any], consts: dict[str, np.ndarray], outputs: list[str]):
        self.nodes = list(nodes)
        self.consts = dict(consts)
        self.outputs = set(outputs)
        for n in self.nodes:
            if n.op_type == "Constant" and n.output:
                v = _constant_value(n)
                if v is not None:
                    self.consts[n.output[0]] = v
        self._index()

    def _index(self) -> None:
        self._producer = {t: n for n in self.nodes for t in n.output if t}
        self._consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for t in n.input:
                self._consumers.setdefault(t, []).append(n)

    def of_type(self, op_type: str) -> list[Any]:
        return [n for n in self.nodes if n.op_type == op_type]

    def producer(self, t: str) -> Any | None:
        return self._producer.get(t)

    def consumers(self, t: str) -> list[Any]:
        return list(self._consumers.get(t, []))

    def single_use(self, t: str) -> bool:
        return t not in self.outputs and len(self.consumers(t)) == 1

    def only_consumer(self, t: str, op_type: str) -> Any | None:
        if not self.single_use(t):
            return None
        n = self.consumers(t)[0]
        return n if n.op_type == op_type else None

    def scalar(self, t: str) -> float | None:
        v = self.consts.get(t)
        return float(np.asarray(v).reshape(-1)[0]) if v is not None and np.size(v) == 1 else None

    def const_operand(self, node: Any, other: str) -> float | None:
        """The constant scalar operand of a binary ``node`` whose other operand is ``other``."""
        if len(node.input) != 2 or other not in node.input:
            return None
        c = node.input[1] if node.input[0] == other else node.input[0]
        return self.scalar(c)

    def scaled_input(self, node: Any, factor: float) -> str | None:
        """x when ``node`` is ``x * factor`` (Mul) or ``x / (1/factor)`` (Div), float32-close."""
        if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
            return None
        for i, t in enumerate(node.input):
            c = self.scalar(t)
            if c is None or node.input[1 - i] in self.consts:  # x must be computed
                continue
            if node.op_type == "Div" and i == 0:
                continue
            want = factor if node.op_type == "Mul" else 1.0 / factor
            if abs(c - want) <= 1e-6 * abs(want):
                return node.input[1 - i]
        return None

    def times_half_x(self, t: str, x: str) -> tuple[str, list[Any]] | None:
        """``t * x * 0.5`` in any order of two Muls: (the product's name, the Mul nodes)."""
        m1 = self.only_consumer(t, "Mul")
        if m1 is None:
            return None
        other = m1.input[1] if m1.input[0] == t else m1.input[0]
        if other == x:  # (x * t) * 0.5
            m2 = self.only_consumer(m1.output[0], "Mul")
            if m2 is not None and self.const_operand(m2, m1.output[0]) == 0.5:
                return m2.output[0], [m1, m2]
            return None
        if self.scalar(other) == 0.5:  # x * (t * 0.5)
            m2 = self.only_consumer(m1.output[0], "Mul")
            if m2 is not None and x in m2.input and m1.output[0] in m2.input:
                return m2.output[0], [m1, m2]
            return None
        h = self.producer(other)  # (x * 0.5) * t
        if h is None or h.op_type != "Mul" or not self.single_use(other):
            return None
        return (m1.output[0], [h, m1]) if self.const_operand(h, x) == 0.5 else None

    def cubic_term(self, add: Any, coeff: float) -> tuple[str, list[Any]] | None:
        """``x + coeff * x**3`` (Mul or Pow for the cube): (x, the nodes of the cubic term)."""
        for i, t in enumerate(add.input):
            x = add.input[1 - i]
            k = self.producer(t)
            cube_t = self.scaled_input(k, coeff) if k is not None and self.single_use(t) else None
            cube = self.producer(cube_t) if cube_t is not None else None
            if cube is None or cube_t is None or not self.single_use(cube_t):
                continue
            if cube.op_type == "Pow" and cube.input[0] == x and self.scalar(cube.input[1]) == 3.0:
                return x, [cube, k]
            if cube.op_type == "Mul" and x in cube.input:
                sq_t = cube.input[1] if cube.input[0] == x else cube.input[0]
                sq = self.producer(sq_t)
                if sq is not None and self.single_use(sq_t) and list(sq.input) == [x, x]:
                    return x, [sq, cube, k]
        return None

    def replace(
        self, old: list[Any], op_type: str, inputs: list[str], output: str, **attrs
    ) -> None:
        """Drop ``old`` and put one ``op_type`` node computing ``output`` where the last one was."""
        from onnx import helper

        pos = max(self.nodes.index(n) for n in old)
        name = next((n.name for n in old if output in n.output), "") or output
        new = helper.make_node(op_type, inputs, [output], name=name, **attrs)
        self.nodes.insert(pos + 1, new)
        ids = {id(n) for n in old}
        self.nodes = [n for n in self.nodes if id(n) not in ids]
        self._index()


def _constant_value(onode: Any) -> np.ndarray | None:
    from onnx import numpy_helper

    a = onnx_attrs(onode)
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key in ("value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            return np.asarray(a[key])
    return None
