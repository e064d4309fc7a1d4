"""Walk ONNX nodes into IR nodes: constants, folding, aliases; every op handler comes from ``ops/``.

Each op module lists its ONNX handlers (``Op.onnx_import``); this module only
does what belongs to no op: ``Constant``, ``Shape`` of a computed tensor,
folding of all-constant subgraphs with ``onnx.reference``, and the
value-preserving no-ops (``Identity``, ``Dropout``, ``Cast``) that become aliases.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from lightspeed.errors import ModelError, ShapeError
from lightspeed.ops import onnx_handlers
from lightspeed.ops.onnx_import import (
    BATCH,
    ImportState,
    alias,
    dyn,
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
_QONNX_OPS = ("Quant", "BipolarQuant")


def clean(raw: str) -> str:
    """A node name usable as an identifier in configs and generated code."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", raw).strip("_") or "node"
    return f"n{name}" if name[0].isdigit() else name


def node_name(onode: Any) -> str:
    return clean(onode.name or (onode.output[0] if onode.output else onode.op_type))


def convert_node(onode: Any, st: ImportState, model: Any) -> None:
    op = onode.op_type
    name = node_name(onode)
    qonnx = onode.domain in QONNX_DOMAINS or (onode.domain and op in _QONNX_OPS)
    if qonnx and op not in _QONNX_OPS:
        raise unsupported(f"{onode.domain}.{op}", name, "QONNX op other than Quant/BipolarQuant")
    if not qonnx and onode.domain not in ("", "ai.onnx"):
        raise unsupported(f"{onode.domain}.{op}", name, "custom domain")
    if op == "Constant":
        _constant(onode, st, name)
        return
    if op == "Shape" and not st.is_const(onode.input[0]):
        _shape_of_dynamic(onode, st)
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
    entry[1](onode, st, onnx_attrs(onode), name)


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
        results = ReferenceEvaluator(m).run(None, feeds)
    except Exception as exc:
        raise ModelError(
            f"node {name!r} ({onode.op_type}) on constants could not be evaluated: {exc}"
        ) from None
    for t, v in zip([t for t in onode.output if t], results, strict=True):
        st.consts[t] = np.asarray(v)
    src = st.resolve(onode.input[0]) if onode.input else ""
    if onode.op_type in _VALUE_PRESERVING and src in st.qtypes:
        for t in onode.output:
            if t:
                st.qtypes[t] = st.qtypes[src]


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
