"""Walk ONNX nodes into IR nodes: constants, folding, aliases; every op handler comes from ``ops/``.

Each op module lists its ONNX handlers (``Op.onnx_import``); this module only
does what belongs to no op: ``Constant``, ``Shape`` of a computed tensor,
folding of all-constant subgraphs with ``onnx.reference``, and the
value-preserving no-ops (``Identity``, ``Dropout``, ``Cast``) that become aliases.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from lightspeed.errors import ModelError, ShapeError, UnsupportedOpError
from lightspeed.ir.graph import Node
from lightspeed.ops import onnx_handlers
from lightspeed.ops.onnx_import import (
    BATCH,
    ImportState,
    alias,
    dyn,
    f64,
    onnx_attrs,
    unsupported,
)

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
_FLOAT_TYPES = (1, 10, 11, 16)  # onnx TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
# ops whose folded output holds the same values as their first input (keeps a trained type)
_VALUE_PRESERVING = {
    "Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Concat",
    "Gather", "Slice", "Split",
}  # fmt: skip
_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc", "MultiThreshold")
CHANNELS_LAST = "qonnx.custom_op.channels_last"
_CHANNELS_LAST_OPS = ("Conv", "MaxPool", "BatchNormalization")
_WEIGHT_SLOT = {"Gemm": 1, "MatMul": 1, "Conv": 1}  # input index of a layer's weights


def clean(raw: str) -> str:
    """A node name usable as an identifier in configs and generated code."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", raw).strip("_") or "node"
    return f"n{name}" if name[0].isdigit() else name


def node_name(onode: Any) -> str:
    return clean(onode.name or (onode.output[0] if onode.output else onode.op_type))


def convert_node(onode: Any, st: ImportState, model: Any) -> None:
    op = onode.op_type
    name = node_name(onode)
    if onode.domain == CHANNELS_LAST:
        _channels_last(onode, st, model, name)
        return
    qonnx = onode.domain in QONNX_DOMAINS or (onode.domain and op in _QONNX_OPS)
    if qonnx and op == "FloatQuant":
        raise UnsupportedOpError(
            f"node {name!r}: QONNX FloatQuant (minifloat, e.g. fp8) is not supported: lightspeed "
            "computes in fixed point only; quantize this tensor with an integer Quant instead"
        )
    if qonnx and op not in _QONNX_OPS:
        raise unsupported(
            f"{onode.domain}.{op}", name, f"QONNX op other than {'/'.join(_QONNX_OPS)}"
        )
    if not qonnx and onode.domain not in ("", "ai.onnx"):
        raise unsupported(f"{onode.domain}.{op}", name, "custom domain")
    if op == "Constant":
        _constant(onode, st, name)
        return
    if op == "Shape" and not st.is_const(onode.input[0]):
        _shape_of_dynamic(onode, st)
        return
    if op == "Shape" and st.resolve(onode.input[0]) in st.batch_consts:
        full = np.array([BATCH, *st.const(onode.input[0]).shape[1:]], dtype=np.int64)
        a = onnx_attrs(onode)
        st.consts[onode.output[0]] = full[a.get("start", 0) : a.get("end", None)]
        return
    if op in ("ConstantOfShape", "Expand") and _batch_sized(onode, st):
        return
    present = [t for t in onode.input if t]
    if (
        not qonnx
        and all(st.is_const(t) for t in present)
        and op not in ("RandomNormal", "RandomUniform")
    ):
        _fold(onode, st, model, name)
        return
    if op in ("Identity", "Dropout", "Cast"):
        _passthrough(onode, st, onnx_attrs(onode), name)
        return
    entry = onnx_handlers().get(op)
    if entry is None:
        raise unsupported(op, name)
    coded = [t for t in present if st.resolve(t) in st.wcodes]
    if coded:
        _with_codes(onode, st, entry[1], name, coded)
        return
    entry[1](onode, st, onnx_attrs(onode), name)


def _with_codes(onode: Any, st: ImportState, handler: Any, name: str, coded: list[str]) -> None:
    """A layer whose weights went through a float-scale Quant: integer codes in the MAC,
    then the weight scale (per output channel) and the bias as a ``qscale`` step after it."""
    op = onode.op_type
    a = onnx_attrs(onode)
    if (
        op not in _WEIGHT_SLOT
        or coded != [onode.input[_WEIGHT_SLOT[op]]]
        or (op == "Gemm" and float(a.get("alpha", 1.0)) != 1.0)
    ):
        # the float values are what qonnx computes with; other consumers take them as constants
        handler(onode, st, a, name)
        return
    w = st.resolve(coded[0])
    codes, scale, code_t = st.wcodes[w]
    real, real_t = st.consts[w], st.qtypes.get(w)
    # where the handler puts each weight element: run it once on the scales themselves
    scratch = dataclasses.replace(
        st, consts={**st.consts, w: scale}, nodes=[], names=set(st.names),
        shapes=dict(st.shapes), qtypes=dict(st.qtypes),
    )  # fmt: skip
    handler(onode, scratch, a, name)
    layout = scratch.nodes[-1].params["weight"]
    st.consts[w], st.qtypes[w] = codes, code_t
    try:
        handler(onode, st, a, name)
    finally:
        st.consts[w] = real
        if real_t is None:
            st.qtypes.pop(w, None)
        else:
            st.qtypes[w] = real_t
    node = st.nodes[-1]
    per_out = layout[0] if node.op == "dense" else layout.reshape(layout.shape[0], -1)[:, 0]
    spread = layout / (
        per_out[None, :] if node.op == "dense" else per_out.reshape(-1, *[1] * (layout.ndim - 1))
    )
    if not np.all(spread == 1.0):
        raise unsupported(
            op, name, "weight Quant scale that varies along the input axis (only per-output-"
            "channel float scales can be applied after the accumulator)",
        )  # fmt: skip
    out = node.outputs[0]
    acc = f"{out}__acc"
    node.outputs = [acc]
    st.shapes[acc] = shape = st.shapes.pop(out)
    bias = node.params.pop("bias", np.zeros(per_out.size))
    node.types.pop("bias", None)
    axis = len(shape) - 1 if node.op == "dense" else 0
    vshape = [1] * len(shape)
    vshape[axis] = -1
    st.emit(Node(
        f"{name}_wscale", "affine", [acc], [out],
        attrs={"onnx_op": op, "origin": name, "qscale": True},
        params={
            "scale": np.broadcast_to(per_out.reshape(vshape), shape).astype(np.float64),
            "shift": np.broadcast_to(np.asarray(bias).reshape(vshape), shape).astype(np.float64),
        },
    ))  # fmt: skip


def _channels_last(onode: Any, st: ImportState, model: Any, name: str) -> None:
    """qonnx's channels-last wrapper (``ConvertToChannelsLastAndClean``): the standard op
    between two transposes, as qonnx executes it; a Conv's weights are stored (O, k..., I)."""
    from onnx import NodeProto

    op = onode.op_type
    if op not in _CHANNELS_LAST_OPS:
        raise unsupported(
            f"{CHANNELS_LAST}.{op}", name,
            f"channels-last op other than {'/'.join(_CHANNELS_LAST_OPS)}",
        )  # fmt: skip
    x = dyn(st, onode.input[0], op, name)
    nd = len(st.shapes[x])
    first = f"{onode.output[0]}__channels_first"
    st.emit(
        Node(
            f"{name}_to_cf",
            "transpose",
            [x],
            [first],
            attrs={"perm": [nd - 1, *range(nd - 1)], "channels_last": True},
        )
    )
    inner = NodeProto()
    inner.CopyFrom(onode)
    inner.domain = ""
    inner.input[0] = first
    if op == "Conv":
        w = onode.input[1]
        if not st.is_const(w):
            raise unsupported(f"{CHANNELS_LAST}.Conv", name, "non-constant weights")
        perm = [0, st.const(w).ndim - 1, *range(1, st.const(w).ndim - 1)]
        src = st.resolve(w)
        moved = f"{w}__channels_first"
        st.consts[moved] = np.transpose(st.const(w), perm)
        if src in st.qtypes:
            st.qtypes[moved] = st.qtypes[src]
        if src in st.wcodes:
            codes, scale, code_t = st.wcodes[src]
            st.wcodes[moved] = (np.transpose(codes, perm), np.transpose(scale, perm), code_t)
        inner.input[1] = moved
    mid = f"{onode.output[0]}__cf_out"
    inner.output[0] = mid
    convert_node(inner, st, model)
    st.emit(Node(f"{name}_to_cl", "transpose", [st.resolve(mid)], [onode.output[0]],
                 attrs={"perm": [*range(1, nd), 0], "channels_last": True}))  # fmt: skip


def _constant(onode: Any, st: ImportState, name: str) -> None:
    from onnx import numpy_helper

    a = onnx_attrs(onode)
    if "value" in a:
        v = numpy_helper.to_array(a["value"])
    elif "value_float" in a:
        v = np.array(a["value_float"], dtype=np.float32)
    elif "value_floats" in a:
        v = np.array(a["value_floats"], dtype=np.float32)
    elif "value_int" in a:
        v = np.array(a["value_int"], dtype=np.int64)
    elif "value_ints" in a:
        v = np.array(a["value_ints"], dtype=np.int64)
    else:
        raise unsupported("Constant", name, "sparse or string value")
    st.consts[onode.output[0]] = v


def _batch_sized(onode: Any, st: ImportState) -> bool:
    """ConstantOfShape/Expand of a constant to a shape that starts with the batch size
    (torch's ``zeros(x.shape[0], ...)``, ``index.expand_as(x)``): folded with a batch axis
    of 1 and recorded as a batch constant (the same values for every sample)."""
    shape_t = onode.input[0] if onode.op_type == "ConstantOfShape" else onode.input[1]
    if not st.is_const(shape_t):
        return False
    shape = np.asarray(st.const(shape_t))
    if shape.ndim != 1 or not shape.size or shape[0] != BATCH or np.any(shape[1:] == BATCH):
        return False
    from onnx import numpy_helper

    shape = np.array([1, *shape[1:]], dtype=np.int64)
    if onode.op_type == "ConstantOfShape":
        a = {x.name: x for x in onode.attribute}
        value = numpy_helper.to_array(a["value"].t) if "value" in a else np.zeros(1, np.float32)
        out = np.full(tuple(shape), value.reshape(-1)[0], dtype=value.dtype)
    else:
        src = np.asarray(st.const(onode.input[0]))
        if src.ndim > len(shape) or (src.ndim == len(shape) and src.shape[0] != 1):
            return False
        out = src * np.ones(tuple(shape), dtype=src.dtype)
    st.consts[onode.output[0]] = out
    st.batch_consts.add(onode.output[0])
    return True


def _shape_of_dynamic(onode: Any, st: ImportState) -> None:
    x = dyn(st, onode.input[0], "Shape", onode.name)
    full = np.array([BATCH, *st.shapes[x]], dtype=np.int64)
    a = onnx_attrs(onode)
    start, end = a.get("start", 0), a.get("end", None)
    st.consts[onode.output[0]] = full[start:end]


def _fold(onode: Any, st: ImportState, model: Any, name: str) -> None:
    """Evaluate a node whose inputs are all constants with the ONNX reference runtime."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    feeds = {t: st.const(t) for t in onode.input if t}
    if any(np.any(v == BATCH) for v in feeds.values() if v.dtype.kind == "i") and onode.op_type not in (
        "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Identity", "Reshape", "Cast",
    ):  # fmt: skip
        raise ShapeError(
            f"node {name!r} ({onode.op_type}) computes with the batch size; lightspeed needs "
            "shapes that do not depend on the batch (export with a fixed reshape target, e.g. "
            "x.flatten(1))"
        )

    def evaluate(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        vis = [
            helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for t, v in feeds.items()
        ]
        outs = [helper.make_value_info(t, onnx.TypeProto()) for t in onode.output if t]
        graph = helper.make_graph([onode], "fold", vis, outs)
        m = helper.make_model(
            graph, opset_imports=list(model.opset_import), ir_version=model.ir_version
        )
        try:
            return [np.asarray(v) for v in ReferenceEvaluator(m).run(None, feeds)]
        except Exception as exc:
            raise ModelError(
                f"node {name!r} ({onode.op_type}) on constants could not be evaluated: {exc}"
            ) from None

    results = evaluate(feeds)
    for t, v in zip([t for t in onode.output if t], results, strict=True):
        st.consts[t] = v
    src = st.resolve(onode.input[0]) if onode.input else ""
    if onode.op_type in _VALUE_PRESERVING and src in st.qtypes:
        for t in onode.output:
            if t:
                st.qtypes[t] = st.qtypes[src]
    if onode.op_type in _VALUE_PRESERVING and src in st.wcodes and len(onode.output) == 1:
        # the codes and their scales move the same way as the values (e.g. a Transpose)
        codes, scale, code_t = st.wcodes[src]
        moved = [evaluate({**feeds, onode.input[0]: v.astype(feeds[onode.input[0]].dtype)})[0]
                 for v in (codes, scale)]  # fmt: skip
        st.wcodes[onode.output[0]] = (f64(moved[0]), f64(moved[1]), code_t)


def _passthrough(onode: Any, st: ImportState, a: dict[str, Any], name: str) -> None:
    op = onode.op_type
    if (
        op == "Dropout"
        and len(onode.output) > 1
        and onode.output[1]
        and st.uses.get(onode.output[1], 0)
    ):
        raise unsupported("Dropout", name, "mask output")
    if op == "Cast" and int(a["to"]) not in _FLOAT_TYPES:
        raise unsupported("Cast", name, "cast of an activation to a non-float type")
    dyn(st, onode.input[0], op, name)
    alias(st, onode.output[0], onode.input[0])
