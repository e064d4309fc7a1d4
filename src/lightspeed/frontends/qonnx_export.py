"""Export a :class:`~lightspeed.quantize.QuantizedModel` to QONNX.

The file is a standard ONNX graph (Gemm/MatMul, Conv, Mul+Add for a
standalone batchnorm, activations, pooling, ...) in which every fixed-point
type QONNX can state is a ``Quant`` node (domain ``qonnx.custom_op.general``):

* each graph input is followed by a ``Quant`` with the input type;
* weights, biases and batchnorm scale/shift are stored as their quantized
  values (``integers * 2**-frac``) behind a ``Quant`` with their type;
* every layer with a ``result`` type is followed by a ``Quant`` with it.

A ``Quant`` holds ``ap_fixed<W,I,Q,O>`` as scale ``2**-(W-I)``, bitwidth W,
``signed``, ``narrow = (O == SAT_SYM)`` and ``rounding_mode`` ROUND (RND_CONV),
FLOOR (TRN) or ROUND_TO_ZERO (TRN_ZERO). What QONNX cannot state -- accumulator
types, the other rounding modes (RND, RND_ZERO, RND_INF, RND_MIN_INF), WRAP
and SAT_ZERO overflow, lookup-table types and sizes, LeakyReLU's quantized
alpha type -- travels in ``metadata_props["lightspeed.precision"]`` (JSON,
node -> role -> type). Other tools ignore it and read the ``Quant`` nodes (the
nearest QONNX mode is written there); lightspeed's importer applies it, so
re-quantizing the imported model reproduces the original bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import ModelError, UnsupportedOpError
from lightspeed.files import atomic_file
from lightspeed.fixed import to_float
from lightspeed.ops import all_ops, get_op
from lightspeed.ops.onnx_export import META_ATTRS, META_KEY, QONNX_DOMAIN, Builder, quant_attrs


def clean_name(raw: str) -> str:
    from lightspeed.frontends._convert import clean

    return clean(raw)


def _exact_in_float32(values: list[np.ndarray]) -> bool:
    for v in values:
        v = np.asarray(v, dtype=np.float64)
        if not np.array_equal(v.astype(np.float32).astype(np.float64), v):
            return False
    return True


def to_qonnx(q: Any) -> Any:
    """Build the QONNX ``ModelProto`` of a quantized model."""
    import onnx
    from onnx import helper

    g = q.graph
    consts = [
        to_float(np.asarray(m), q.precision[n][_role(n, p, q)])
        for n, ps in q.qparams.items()
        for p, m in ps.items()
        if p in ("weight", "bias", "scale", "shift")
    ]
    dtype = np.float32 if _exact_in_float32(consts) else np.float64
    elem = onnx.TensorProto.FLOAT if dtype is np.float32 else onnx.TensorProto.DOUBLE
    b = Builder(dtype)
    b.names.update(g.inputs)
    b.names.update(t for n in g.nodes for t in n.outputs)
    b.names.update(clean_name(n.name) for n in g.nodes)  # node names key the metadata
    names: dict[str, str] = {}  # IR tensor -> ONNX tensor carrying its (quantized) value
    meta: dict[str, Any] = {"format": 1, "nodes": {}, "inputs": {}}
    for name, t in q.input_types.items():
        out = b.fresh(f"{name}_q")
        qname = b.fresh(clean_name(f"{name}_input_quant"))
        b.quant(name, out, t, qname)
        names[name] = out
        meta["inputs"][name] = str(t)
        meta["nodes"][qname] = {"op": "quant", "precision": {"result": str(t)}}
    for node in g.nodes:
        prec = q.precision[node.name]
        key = clean_name(node.name)
        entry: dict[str, Any] = {"op": node.op, "precision": {r: str(t) for r, t in prec.items()}}
        extra = {k: node.attrs[k] for k in META_ATTRS if k in node.attrs}
        if extra:
            entry["attrs"] = extra
        meta["nodes"][key] = entry
        emit = get_op(node.op).onnx_export
        if emit is None:
            exportable = sorted(n for n, o in all_ops().items() if o.onnx_export is not None)
            raise UnsupportedOpError(
                f"node {node.name!r}: op {node.op} has no QONNX/ONNX form; exportable ops: "
                f"{', '.join(exportable)}"
            )
        ins = [names[t] for t in node.inputs]
        out = node.outputs[0]
        has_result = "result" in prec and node.op != "quant"
        raw = b.fresh(f"{out}_raw") if has_result else out
        emit(b, node, key, ins, raw, prec, q.qparams[node.name], q.graph.shapes)
        if has_result:
            rq = b.fresh(f"{key}_result_quant")
            b.quant(raw, out, prec["result"], rq)
            meta["nodes"][rq] = {"op": "quant", "precision": {"result": str(prec["result"])}}
        names[out] = out

    def vi(name: str, shape: tuple[int, ...]) -> Any:
        return helper.make_tensor_value_info(name, elem, ["batch", *shape])

    graph = helper.make_graph(
        b.nodes, g.name or "lightspeed",
        [vi(n, s) for n, s in g.inputs.items()],
        [vi(names[o], g.shapes[o]) for o in g.outputs],
        b.inits,
    )  # fmt: skip
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)],
        producer_name="lightspeed",
        ir_version=8,
    )
    helper.set_model_props(model, {META_KEY: json.dumps(meta, sort_keys=True)})
    return model


def _role(node: str, param: str, q: Any) -> str:
    """The role whose type scales an integer parameter (see QuantizedModel.qparams)."""
    prec = q.precision[node]
    role = get_op(q.graph.node(node).op).role_of(param)
    if role in prec:
        return role
    raise ModelError(f"node {node!r}: no type for parameter {param!r}")


def export_qonnx(q: Any, path: str | Path) -> Path:
    """Write ``q`` as a QONNX model file (atomically: no partial file on failure)."""
    import onnx

    path = Path(path)
    model = to_qonnx(q)
    with atomic_file(path, suffix=".onnx.tmp") as tmp:
        onnx.save(model, str(tmp))
    return path


__all__ = ["META_ATTRS", "META_KEY", "QONNX_DOMAIN", "export_qonnx", "quant_attrs", "to_qonnx"]
