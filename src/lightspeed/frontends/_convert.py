"""Per-op translation of ONNX nodes into IR nodes (used by :mod:`lightspeed.frontends.onnx`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from lightspeed.errors import ModelError, ShapeError
from lightspeed.frontends.onnx import BATCH, QONNX_DOMAINS, _attrs, _State, unsupported
from lightspeed.ir import Node

_FLOAT_TYPES = (1, 10, 11, 16)  # onnx TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
# ops whose folded output holds the same values as their first input (keeps a trained type)
_VALUE_PRESERVING = {
    "Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Concat",
    "Gather", "Slice", "Split",
}  # fmt: skip


def clean(raw: str) -> str:
    """A node name usable as an identifier in configs and generated code."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", raw).strip("_") or "node"
    return f"n{name}" if name[0].isdigit() else name


def node_name(onode: Any, st: _State) -> str:
    return clean(onode.name or (onode.output[0] if onode.output else onode.op_type))


def convert_node(onode: Any, st: _State, model: Any) -> None:
    op = onode.op_type
    name = node_name(onode, st)
    if onode.domain in QONNX_DOMAINS or (onode.domain and op in ("Quant", "BipolarQuant")):
        from lightspeed.frontends.qonnx import convert_quant

        convert_quant(onode, st, name)
        return
    if onode.domain not in ("", "ai.onnx"):
        raise unsupported(f"{onode.domain}.{op}", name, "custom domain")
    if op == "Constant":
        _constant(onode, st, name)
        return
    if op == "Shape" and not st.is_const(onode.input[0]):
        _shape_of_dynamic(onode, st)
        return
    present = [t for t in onode.input if t]
    if all(st.is_const(t) for t in present) and op not in ("RandomNormal", "RandomUniform"):
        _fold(onode, st, model, name)
        return
    handler = HANDLERS.get(op)
    if handler is None:
        raise unsupported(op, name)
    handler(onode, st, _attrs(onode), name)


# ---------------------------------------------------------------------------
# constants


def _constant(onode: Any, st: _State, name: str) -> None:
    from onnx import numpy_helper

    a = _attrs(onode)
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


def _shape_of_dynamic(onode: Any, st: _State) -> None:
    x = _dyn(st, onode.input[0], "Shape", onode.name)
    full = np.array([BATCH, *st.shapes[x]], dtype=np.int64)
    a = _attrs(onode)
    start, end = a.get("start", 0), a.get("end", None)
    st.consts[onode.output[0]] = full[start:end]


def _fold(onode: Any, st: _State, model: Any, name: str) -> None:
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


# ---------------------------------------------------------------------------
# helpers


def _dyn(st: _State, t: str, op: str, name: str) -> str:
    r = st.resolve(t)
    if r not in st.shapes:
        if r in st.consts:
            raise unsupported(op, name, f"constant input {t!r} where a tensor is expected")
        raise ModelError(f"node {name!r} ({op}): input tensor {t!r} is never produced")
    return r


def _alias(st: _State, out: str, src: str) -> None:
    src = st.resolve(src)
    st.alias[out] = src
    st.uses[src] = st.uses.get(src, 0) + st.uses.get(out, 0) - 1
    if src in st.qtypes:
        st.qtypes[out] = st.qtypes[src]


def _f64(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _along(full: np.ndarray, axis: int) -> np.ndarray | None:
    """The vector ``v`` if ``full`` only varies along ``axis`` (else None)."""
    idx = tuple(slice(None) if i == axis else 0 for i in range(full.ndim))
    v = full[idx]
    shape = [1] * full.ndim
    shape[axis] = -1
    if np.array_equal(np.broadcast_to(v.reshape(shape), full.shape), full):
        return np.ascontiguousarray(v)
    return None


def _full(c: np.ndarray, shape: tuple[int, ...], op: str, name: str) -> np.ndarray:
    """Broadcast a constant operand to the tensor's IR shape (refusing batch-dependent ones)."""
    c = _f64(c)
    try:
        b = np.broadcast_shapes(c.shape, (1, *shape))
    except ValueError:
        raise ShapeError(
            f"node {name!r} ({op}): constant {c.shape} does not broadcast to {shape}"
        ) from None
    if b != (1, *shape):
        raise unsupported(op, name, f"constant of shape {c.shape} would grow the tensor {shape}")
    return np.broadcast_to(c, (1, *shape))[0].copy()


def _drop_precision(node: Node, roles: tuple[str, ...]) -> None:
    prec = node.attrs.get("precision")
    if prec:
        for r in roles:
            prec.pop(r, None)
        if not prec:
            node.attrs.pop("precision")


def affine(
    st: _State, x: str, out: str, scale: np.ndarray, shift: np.ndarray, name: str, op: str
) -> None:
    """Emit ``out = x*scale + shift`` (full-shape constants): fold into the producer or a batchnorm."""
    shape = st.shapes[x]
    prod = st.producer(x)
    foldable = prod is not None and (not st.exact or prod.name == name)
    if (
        prod is not None
        and foldable
        and st.uses.get(x, 0) == 1
        and prod.op in ("dense", "conv", "batchnorm")
    ):
        axis = len(shape) - 1 if prod.op == "dense" else 0
        s, b = _along(scale, axis), _along(shift, axis)
        if s is not None and b is not None:
            if prod.op == "batchnorm":
                prod.params["scale"] = prod.params["scale"] * s
                prod.params["shift"] = prod.params["shift"] * s + b
            else:
                w = prod.params["weight"]
                wshape = (1, -1) if prod.op == "dense" else (-1,) + (1,) * (w.ndim - 1)
                prod.params["weight"] = w * s.reshape(wshape)
                bias = prod.params.get(
                    "bias", np.zeros(w.shape[1] if prod.op == "dense" else w.shape[0])
                )
                prod.params["bias"] = bias * s + b
            if not np.all(s == 1.0):
                _drop_precision(prod, ("weight", "bias"))
            elif np.any(b != 0.0):
                _drop_precision(prod, ("bias",))
            prod.outputs = [out]
            st.shapes[out] = shape
            return
    s, b = _along(scale, 0), _along(shift, 0)
    if s is None or b is None:
        raise unsupported(
            op, name, "constant operand varies along more than the channel axis (axis 1)"
        )
    st.emit(Node(name, "batchnorm", [x], [out], params={"scale": s, "shift": b}))


def _opt_const(st: _State, onode: Any, i: int) -> np.ndarray | None:
    if len(onode.input) > i and onode.input[i]:
        t = onode.input[i]
        if not st.is_const(t):
            raise unsupported(onode.op_type, onode.name, f"input {i} must be a constant")
        return st.const(t)
    return None


def _trained(st: _State, t: str) -> str | None:
    return st.qtypes.get(st.resolve(t)) if t else None


def _set_precision(node: Node, role: str, t: str | None) -> None:
    if t is not None:
        node.attrs.setdefault("precision", {})[role] = t


# ---------------------------------------------------------------------------
# handlers: (onnx node, state, attrs, clean name)

Handler = Callable[[Any, _State, dict[str, Any], str], None]


def _gemm(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "Gemm", name)
    if a.get("transA", 0):
        raise unsupported("Gemm", name, "transA=1")
    if not st.is_const(onode.input[1]):
        raise unsupported("Gemm", name, "non-constant B (weights)")
    w = _f64(st.const(onode.input[1]))
    if w.ndim != 2:
        raise ModelError(f"node {name!r} (Gemm): weight must be 2-D, got {w.shape}")
    if a.get("transB", 0):
        w = w.T
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if len(st.shapes[x]) != 1 or st.shapes[x][0] != w.shape[0]:
        raise ShapeError(
            f"node {name!r} (Gemm): input {st.shapes[x]} does not match weight {w.shape}"
        )
    node = Node(name, "dense", [x], [onode.output[0]], params={"weight": alpha * w})
    c = _opt_const(st, onode, 2)
    if c is not None:
        c = _f64(c)
        if c.ndim == 2 and c.shape[0] != 1:
            raise unsupported("Gemm", name, f"bias C of shape {c.shape} depends on the batch row")
        node.params["bias"] = (
            beta * np.broadcast_to(c.reshape(-1) if c.ndim else c, (w.shape[1],)).copy()
        )
    if alpha == 1.0:
        _set_precision(node, "weight", _trained(st, onode.input[1]))
    if c is not None and beta == 1.0:
        _set_precision(node, "bias", _trained(st, onode.input[2]))
    st.emit(node)


def _matmul(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    if st.is_const(onode.input[0]):
        raise unsupported("MatMul", name, "constant left operand; use x @ W with constant W")
    x = _dyn(st, onode.input[0], "MatMul", name)
    if not st.is_const(onode.input[1]):
        raise unsupported("MatMul", name, "product of two non-constant tensors")
    w = _f64(st.const(onode.input[1]))
    if w.ndim != 2:
        raise unsupported("MatMul", name, f"weight of rank {w.ndim} (only 2-D constant weights)")
    node = Node(name, "dense", [x], [onode.output[0]], params={"weight": w})
    _set_precision(node, "weight", _trained(st, onode.input[1]))
    st.emit(node)


def _same_pads(in_sp, k, strides, dil, mode: str) -> list[int]:
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


def _pads(a: dict[str, Any], in_sp, k, strides, dil, op: str, name: str) -> list[int]:
    mode = _decode_str(a.get("auto_pad", "NOTSET"))
    nd = len(k)
    if mode in ("NOTSET", ""):
        return [int(p) for p in a.get("pads", [0] * (2 * nd))]
    if mode == "VALID":
        return [0] * (2 * nd)
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        return _same_pads(in_sp, k, strides, dil, mode)
    raise ModelError(f"node {name!r} ({op}): unknown auto_pad {mode!r}")


def _decode_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _conv(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "Conv", name)
    if not st.is_const(onode.input[1]):
        raise unsupported("Conv", name, "non-constant weights")
    w = _f64(st.const(onode.input[1]))
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise unsupported("Conv", name, f"{nd}-D convolution (only 1-D and 2-D)")
    k = [int(v) for v in a.get("kernel_shape", w.shape[2:])]
    if tuple(k) != w.shape[2:]:
        raise ModelError(f"node {name!r} (Conv): kernel_shape {k} does not match weight {w.shape}")
    strides = [int(v) for v in a.get("strides", [1] * nd)]
    dil = [int(v) for v in a.get("dilations", [1] * nd)]
    shape = st.shapes[x]
    if len(shape) != nd + 1:
        raise ShapeError(
            f"node {name!r} (Conv): input {shape} is not (channels, {nd} spatial dims)"
        )
    pads = _pads(a, shape[1:], k, strides, dil, "Conv", name)
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": int(a.get("group", 1))}
    node = Node(name, "conv", [x], [onode.output[0]], attrs=attrs, params={"weight": w})
    b = _opt_const(st, onode, 2)
    if b is not None:
        node.params["bias"] = _f64(b).reshape(-1)
        _set_precision(node, "bias", _trained(st, onode.input[2]))
    _set_precision(node, "weight", _trained(st, onode.input[1]))
    st.emit(node)


def _batchnorm(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "BatchNormalization", name)
    if a.get("training_mode", 0):
        raise unsupported("BatchNormalization", name, "training_mode=1; export the model in eval()")
    if any(o for o in onode.output[1:]):
        raise unsupported("BatchNormalization", name, "running-statistics outputs (training mode)")
    gamma, beta, mean, var = (_opt_const(st, onode, i) for i in (1, 2, 3, 4))
    if gamma is None or beta is None or mean is None or var is None:
        raise ModelError(f"node {name!r} (BatchNormalization) needs scale, B, mean and var inputs")
    eps = float(a.get("epsilon", 1e-5))
    s = _f64(gamma) / np.sqrt(_f64(var) + eps)
    sh = _f64(beta) - _f64(mean) * s
    shape = st.shapes[x]
    cshape = (-1,) + (1,) * (len(shape) - 1)
    scale = np.broadcast_to(s.reshape(cshape), shape).copy()
    shift = np.broadcast_to(sh.reshape(cshape), shape).copy()
    affine(st, x, onode.output[0], scale, shift, name, "BatchNormalization")


def _unary(op: str, attrs_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Handler:
    def h(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
        x = _dyn(st, onode.input[0], onode.op_type, name)
        attrs = attrs_fn(a) if attrs_fn else {}
        st.emit(Node(name, op, [x], [onode.output[0]], attrs=attrs))

    return h


def _clip(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "Clip", name)
    lo_c, hi_c = _opt_const(st, onode, 1), _opt_const(st, onode, 2)
    lo = float(lo_c) if lo_c is not None else a.get("min")
    hi = float(hi_c) if hi_c is not None else a.get("max")
    lo = None if lo is None or lo <= -3.0e38 else float(lo)
    hi = None if hi is None or hi >= 3.0e38 else float(hi)
    if lo == 0.0 and hi is None:
        st.emit(Node(name, "relu", [x], [onode.output[0]]))
    else:
        st.emit(Node(name, "clip", [x], [onode.output[0]], attrs={"min": lo, "max": hi}))


def _hard_sigmoid(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "HardSigmoid", name)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    shape = st.shapes[x]
    mid = f"{onode.output[0]}__affine"
    st.uses[mid] = 1
    affine(st, x, mid, np.full(shape, alpha), np.full(shape, beta), f"{name}_affine", "HardSigmoid")
    st.emit(Node(name, "clip", [mid], [onode.output[0]], attrs={"min": 0.0, "max": 1.0}))


def _softmax(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "Softmax", name)
    rank = len(st.shapes[x]) + 1
    axis = int(a.get("axis", -1 if st.opset >= 13 else 1))
    if axis < 0:
        axis += rank
    if axis != rank - 1:
        raise unsupported("Softmax", name, f"axis {axis} (only the last axis)")
    st.emit(Node(name, "softmax", [x], [onode.output[0]], attrs={"axis": -1}))


def _binary(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    op = onode.op_type
    out = onode.output[0]
    t0, t1 = onode.input[0], onode.input[-1]
    c0, c1 = st.is_const(t0), st.is_const(t1)
    if op == "Sum":
        if any(st.is_const(t) for t in onode.input):
            raise unsupported("Sum", name, "constant operand; use Add")
        xs = [_dyn(st, t, op, name) for t in onode.input]
        st.emit(Node(name, "add", xs, [out]))
        return
    if not c0 and not c1:
        if op not in ("Add", "Mul"):
            raise unsupported(op, name, "two non-constant operands")
        xs = [_dyn(st, t, op, name) for t in (t0, t1)]
        st.emit(Node(name, op.lower(), xs, [out]))
        return
    x = _dyn(st, t1 if c0 else t0, op, name)
    c = _full(st.const(t0 if c0 else t1), st.shapes[x], op, name)
    ones, zeros = np.ones_like(c), np.zeros_like(c)
    if op == "Add":
        scale, shift = ones, c
    elif op == "Mul":
        scale, shift = c, zeros
    elif op == "Sub":
        scale, shift = (-ones, c) if c0 else (ones, -c)
    else:  # Div
        if c0:
            raise unsupported("Div", name, "division by a non-constant tensor")
        scale, shift = 1.0 / c, zeros
    affine(st, x, out, scale, shift, name, op)


def _concat(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    for t in onode.input:
        if st.is_const(t):
            raise unsupported("Concat", name, f"constant input {t!r}")
    xs = [_dyn(st, t, "Concat", name) for t in onode.input]
    rank = len(st.shapes[xs[0]]) + 1
    axis = int(a["axis"])
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise unsupported("Concat", name, "concatenation over the batch axis")
    st.emit(Node(name, "concat", xs, [onode.output[0]], attrs={"axis": axis}))


def _pool(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    op = onode.op_type
    x = _dyn(st, onode.input[0], op, name)
    if len(onode.output) > 1 and onode.output[1] and st.uses.get(onode.output[1], 0):
        raise unsupported(op, name, "Indices output")
    shape = st.shapes[x]
    k = [int(v) for v in a["kernel_shape"]]
    nd = len(k)
    if nd not in (1, 2) or len(shape) != nd + 1:
        raise unsupported(op, name, f"{nd}-D pooling on input {shape} (only 1-D and 2-D)")
    strides = [int(v) for v in a.get("strides", [1] * nd)]
    dil = [int(v) for v in a.get("dilations", [1] * nd)]
    if any(d != 1 for d in dil):
        raise unsupported(op, name, "dilated pooling")
    pads = _pads(a, shape[1:], k, strides, dil, op, name)
    if a.get("ceil_mode", 0):
        for i in range(nd):
            span = shape[1 + i] + pads[i] + pads[i + nd] - k[i]
            if span % strides[i]:
                raise unsupported(
                    op, name, "ceil_mode=1 with a partial last window; use ceil_mode=0"
                )
    attrs: dict[str, Any] = {"kernel_shape": k, "strides": strides, "pads": pads}
    ir_op = "maxpool" if op == "MaxPool" else "avgpool"
    if ir_op == "avgpool":
        attrs["count_include_pad"] = int(a.get("count_include_pad", 0)) if any(pads) else 1
    st.emit(Node(name, ir_op, [x], [onode.output[0]], attrs=attrs))


def _global_pool(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], onode.op_type, name)
    shape = st.shapes[x]
    if onode.op_type == "GlobalAveragePool":
        st.emit(Node(name, "global_avgpool", [x], [onode.output[0]]))
        return
    k = list(shape[1:])
    attrs = {"kernel_shape": k, "strides": [1] * len(k), "pads": [0] * (2 * len(k))}
    st.emit(Node(name, "maxpool", [x], [onode.output[0]], attrs=attrs))


def _reduce_mean(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    """ReduceMean over every spatial axis is a global average pool (+ reshape without keepdims)."""
    x = _dyn(st, onode.input[0], "ReduceMean", name)
    shape = st.shapes[x]
    rank = len(shape) + 1
    axes_c = _opt_const(st, onode, 1)
    axes = [int(v) for v in (axes_c.reshape(-1) if axes_c is not None else a.get("axes", []))]
    axes = sorted(v + rank if v < 0 else v for v in axes)
    if len(shape) < 2 or axes != list(range(2, rank)):
        raise unsupported("ReduceMean", name, f"axes {axes} (only all spatial axes 2..{rank - 1})")
    out = onode.output[0]
    if int(a.get("keepdims", 1)):
        st.emit(Node(name, "global_avgpool", [x], [out]))
        return
    mid = f"{out}__pooled"
    st.emit(Node(name, "global_avgpool", [x], [mid]))
    st.emit(Node(f"{name}_squeeze", "reshape", [mid], [out], attrs={"shape": [shape[0]]}))


def _prelu(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "PRelu", name)
    slope = _opt_const(st, onode, 1)
    if slope is None or np.unique(slope).size != 1:
        raise unsupported("PRelu", name, "per-channel or non-constant slope; use one shared slope")
    alpha = float(np.asarray(slope).reshape(-1)[0])
    st.emit(Node(name, "leaky_relu", [x], [onode.output[0]], attrs={"alpha": alpha}))


def _flatten(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "Flatten", name)
    shape = st.shapes[x]
    axis = int(a.get("axis", 1))
    axis = axis + len(shape) + 1 if axis < 0 else axis
    if axis != 1:
        raise unsupported(
            "Flatten", name, f"axis={axis} merges the batch axis with others; use axis=1"
        )
    st.emit(Node(name, "flatten", [x], [onode.output[0]]))


def _batch_values(st: _State) -> set[int]:
    return {b for b in st.batch.values() if b is not None}


def _reshape(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "Reshape", name)
    if not st.is_const(onode.input[1]):
        raise unsupported("Reshape", name, "non-constant target shape")
    target = [int(v) for v in st.const(onode.input[1]).reshape(-1)]
    shape = st.shapes[x]
    total = int(np.prod(shape))
    if not target:
        raise ShapeError(f"node {name!r} (Reshape): empty target shape would drop the batch axis")
    first, rest = target[0], target[1:]
    allowzero = int(a.get("allowzero", 0))
    out = []
    for i, d in enumerate(rest):
        if d == BATCH:
            raise ShapeError(f"node {name!r} (Reshape): moves the batch size away from axis 0")
        if d == 0 and not allowzero:
            if i >= len(shape):
                raise ShapeError(f"node {name!r} (Reshape): target {target} copies a missing dim")
            d = shape[i]
        out.append(d)
    is_batch = first == BATCH or (first == 0 and not allowzero) or first in _batch_values(st)
    if first == -1:
        if -1 in out or int(np.prod(out)) != total:
            raise ShapeError(
                f"node {name!r} (Reshape): target {target} would change the batch size; "
                "keep the batch axis first (e.g. x.reshape(x.shape[0], -1))"
            )
    elif not is_batch:
        raise ShapeError(
            f"node {name!r} (Reshape): target {target} does not keep the batch axis first; "
            "reshape only the non-batch dims"
        )
    if out.count(-1) > 1:
        raise ShapeError(f"node {name!r} (Reshape): more than one -1 in {target}")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        if known == 0 or total % known:
            raise ShapeError(f"node {name!r} (Reshape): cannot reshape {shape} into {target}")
        out[out.index(-1)] = total // known
    st.emit(Node(name, "reshape", [x], [onode.output[0]], attrs={"shape": out}))


def _squeeze(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    op = onode.op_type
    x = _dyn(st, onode.input[0], op, name)
    shape = st.shapes[x]
    axes_c = _opt_const(st, onode, 1)
    axes = [int(v) for v in (axes_c.reshape(-1) if axes_c is not None else a.get("axes", []))]
    dummy = np.empty((1, *shape), dtype=np.uint8)
    rank_out = dummy.ndim + (len(axes) if op == "Unsqueeze" else 0)
    axes = [v + (rank_out if op == "Unsqueeze" else dummy.ndim) if v < 0 else v for v in axes]
    if 0 in axes or (op == "Squeeze" and not axes):
        raise unsupported(op, name, "touches the batch axis; give explicit non-batch axes")
    res = (
        np.expand_dims(dummy, tuple(axes)) if op == "Unsqueeze" else np.squeeze(dummy, tuple(axes))
    )
    st.emit(Node(name, "reshape", [x], [onode.output[0]], attrs={"shape": list(res.shape[1:])}))


def _transpose(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
    x = _dyn(st, onode.input[0], "Transpose", name)
    rank = len(st.shapes[x]) + 1
    perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
    if perm[0] != 0:
        raise unsupported("Transpose", name, f"perm {perm} moves the batch axis")
    st.emit(
        Node(name, "transpose", [x], [onode.output[0]], attrs={"perm": [p - 1 for p in perm[1:]]})
    )


def _passthrough(onode: Any, st: _State, a: dict[str, Any], name: str) -> None:
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
    _dyn(st, onode.input[0], op, name)
    _alias(st, onode.output[0], onode.input[0])


HANDLERS: dict[str, Handler] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "Relu": _unary("relu"),
    "LeakyRelu": _unary("leaky_relu", lambda a: {"alpha": float(a.get("alpha", 0.01))}),
    "Sigmoid": _unary("sigmoid"),
    "Tanh": _unary("tanh"),
    "Clip": _clip,
    "HardSigmoid": _hard_sigmoid,
    "Softmax": _softmax,
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "Sum": _binary,
    "Concat": _concat,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_pool,
    "GlobalMaxPool": _global_pool,
    "Flatten": _flatten,
    "ReduceMean": _reduce_mean,
    "PRelu": _prelu,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _squeeze,
    "Transpose": _transpose,
    "Identity": _passthrough,
    "Dropout": _passthrough,
    "Cast": _passthrough,
}
