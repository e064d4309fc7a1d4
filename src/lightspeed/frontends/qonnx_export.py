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
from lightspeed.fixed import FixedType, to_float

META_KEY = "lightspeed.precision"
QONNX_DOMAIN = "qonnx.custom_op.general"
_ROUNDING = {"RND_CONV": "ROUND", "TRN": "FLOOR", "TRN_ZERO": "ROUND_TO_ZERO"}
# attrs that the ONNX op cannot carry exactly (tables, exact float bounds)
META_ATTRS = (
    "table_size",
    "table_range",
    "exp_table_size",
    "exp_range",
    "inv_table_size",
    "min",
    "max",
    "alpha",
)


def quant_attrs(t: FixedType) -> dict[str, Any]:
    """QONNX Quant attributes nearest to ``t`` (exact for RND_CONV/TRN/TRN_ZERO with SAT/SAT_SYM)."""
    return {
        "signed": int(t.signed),
        "narrow": int(t.signed and t.overflow == "SAT_SYM"),
        "rounding_mode": _ROUNDING.get(t.rounding, "ROUND"),
    }


def clean_name(raw: str) -> str:
    from lightspeed.frontends._convert import clean

    return clean(raw)


class _Builder:
    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype  # numpy float type of every tensor
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.names: set[str] = set()

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def const(self, base: str, value: Any, dtype: Any = None) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.inits.append(
            numpy_helper.from_array(np.asarray(value, dtype=dtype or self.dtype), name)
        )
        return name

    def node(
        self,
        op: str,
        inputs: list[str],
        outputs: list[str],
        name: str,
        domain: str = "",
        **attrs: Any,
    ) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))

    def quant(self, x: str, out: str, t: FixedType, name: str) -> None:
        scale = self.const(f"{name}_scale", np.ldexp(1.0, -t.frac))
        zp = self.const(f"{name}_zeropt", 0.0)
        bits = self.const(f"{name}_bitwidth", float(t.width))
        self.node("Quant", [x, scale, zp, bits], [out], name, domain=QONNX_DOMAIN, **quant_attrs(t))

    def quant_const(self, base: str, m: np.ndarray, t: FixedType) -> str:
        """A quantized constant behind its Quant node; returns the Quant output name."""
        raw = self.const(base, to_float(np.asarray(m), t))
        out = self.fresh(f"{base}_q")
        self.quant(raw, out, t, self.fresh(f"{base}_quant"))
        return out


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
    b = _Builder(dtype)
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
        if node.op not in _EMIT:
            raise UnsupportedOpError(
                f"node {node.name!r}: op {node.op} has no QONNX/ONNX form; exportable ops: "
                f"{', '.join(sorted(_EMIT))}"
            )
        ins = [names[t] for t in node.inputs]
        out = node.outputs[0]
        has_result = "result" in prec and node.op != "quant"
        raw = b.fresh(f"{out}_raw") if has_result else out
        _EMIT[node.op](b, node, key, ins, raw, prec, q.qparams[node.name], q.graph.shapes)
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
    for r in (param, {"scale": "weight", "shift": "bias", "alpha": "param"}.get(param, param)):
        if r in prec:
            return r
    raise ModelError(f"node {node!r}: no type for parameter {param!r}")


def export_qonnx(q: Any, path: str | Path) -> Path:
    """Write ``q`` as a QONNX model file (atomically: no partial file on failure)."""
    import onnx

    path = Path(path)
    model = to_qonnx(q)
    with atomic_file(path, suffix=".onnx.tmp") as tmp:
        onnx.save(model, str(tmp))
    return path


# ---------------------------------------------------------------------------
# per-op emitters: (builder, node, onnx node name, inputs, output, precision, qparams, shapes)


def _dense(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    w = b.quant_const(f"{key}_weight", qp["weight"], prec["weight"])
    bias = b.quant_const(f"{key}_bias", qp["bias"], prec["bias"]) if "bias" in qp else None
    if len(shapes[node.inputs[0]]) == 1:
        b.node("Gemm", [ins[0], w] + ([bias] if bias else []), [out], key)
        return
    if bias is None:
        b.node("MatMul", [ins[0], w], [out], key)
        return
    mid = b.fresh(f"{out}_matmul")
    b.node("MatMul", [ins[0], w], [mid], key)
    b.node("Add", [mid, bias], [out], key)  # same name: the importer folds it into this dense


def _conv(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    w = b.quant_const(f"{key}_weight", qp["weight"], prec["weight"])
    inputs = [ins[0], w]
    if "bias" in qp:
        inputs.append(b.quant_const(f"{key}_bias", qp["bias"], prec["bias"]))
    nd = qp["weight"].ndim - 2
    a = node.attrs
    b.node(
        "Conv", inputs, [out], key,
        kernel_shape=list(qp["weight"].shape[2:]),
        strides=list(a.get("strides", [1] * nd)), pads=list(a.get("pads", [0] * 2 * nd)),
        dilations=list(a.get("dilations", [1] * nd)), group=int(a.get("group", 1)),
    )  # fmt: skip


def _batchnorm(
    b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    nd = len(shapes[node.inputs[0]])
    cshape = (-1,) + (1,) * (nd - 1)
    s = b.quant_const(f"{key}_scale", qp["scale"].reshape(cshape), prec["weight"])
    sh = b.quant_const(f"{key}_shift", qp["shift"].reshape(cshape), prec["bias"])
    mid = b.fresh(f"{out}_mul")
    b.node("Mul", [ins[0], s], [mid], key)
    b.node("Add", [mid, sh], [out], key)  # same name: merged into this batchnorm on import


def _simple(op: str, **fixed: Any):
    def emit(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
        b.node(op, ins, [out], key, **fixed)

    return emit


def _leaky(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    alpha = float(to_float(np.asarray(qp["alpha"]), prec["param"]))  # the value the hardware uses
    b.node("LeakyRelu", ins, [out], key, alpha=alpha)


def _clip(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    lo, hi = node.attrs.get("min"), node.attrs.get("max")
    args = [ins[0], b.const(f"{key}_min", lo) if lo is not None else ""]
    if hi is not None:
        args.append(b.const(f"{key}_max", hi))
    b.node("Clip", args, [out], key)


def _quant(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    b.quant(ins[0], out, prec["result"], key)


def _pool(op: str):
    def emit(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
        a = node.attrs
        k = list(a["kernel_shape"])
        kw: dict[str, Any] = {
            "kernel_shape": k,
            "strides": list(a.get("strides", k)),
            "pads": list(a.get("pads", [0] * 2 * len(k))),
        }
        if op == "AveragePool":
            kw["count_include_pad"] = int(a.get("count_include_pad", 0))
        b.node(op, ins, [out], key, **kw)

    return emit


def _reshape(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    target = b.const(f"{key}_shape", np.array([-1, *node.attrs["shape"]]), dtype=np.int64)
    b.node("Reshape", [ins[0], target], [out], key)


def _transpose(
    b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    b.node("Transpose", ins, [out], key, perm=[0, *[int(p) + 1 for p in node.attrs["perm"]]])


def _concat(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    b.node("Concat", ins, [out], key, axis=int(node.attrs.get("axis", 1)))


def _add(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    b.node("Add" if len(ins) == 2 else "Sum", ins, [out], key)


def _mul(b: _Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    if len(ins) != 2:
        raise ModelError(
            f"node {node.name!r}: a {len(ins)}-input mul has no single ONNX op; QONNX export "
            "supports two-input mul only"
        )
    b.node("Mul", ins, [out], key)


_EMIT = {
    "dense": _dense,
    "conv": _conv,
    "batchnorm": _batchnorm,
    "relu": _simple("Relu"),
    "leaky_relu": _leaky,
    "clip": _clip,
    "sigmoid": _simple("Sigmoid"),
    "tanh": _simple("Tanh"),
    "softmax": _simple("Softmax", axis=-1),
    "add": _add,
    "mul": _mul,
    "concat": _concat,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool"),
    "global_avgpool": _simple("GlobalAveragePool"),
    "flatten": _simple("Flatten", axis=1),
    "reshape": _reshape,
    "transpose": _transpose,
    "quant": _quant,
}
