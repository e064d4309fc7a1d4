"""Data movement: Flatten, Reshape, Transpose. Values and types pass through unchanged."""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ShapeError
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import Fx, Op, Precision, QParams
from lightspeed.ops.onnx_export import Builder, simple
from lightspeed.ops.onnx_import import BATCH, ImportState, dyn, unsupported


def _keep_type(node: Node, ctx) -> Precision:
    return {}


def _flatten_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    return [(int(np.prod(ins[0])),)]


def _reshape_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    target = [int(v) for v in node.attrs["shape"]]
    total = int(np.prod(ins[0]))
    if target.count(-1) == 1:
        known = int(np.prod([v for v in target if v != -1]))
        target[target.index(-1)] = total // known if known else 0
    if int(np.prod(target)) != total:
        raise ShapeError(f"cannot reshape {ins[0]} into {tuple(node.attrs['shape'])}")
    return [tuple(target)]


def _transpose_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    perm = [int(p) for p in node.attrs["perm"]]
    if sorted(perm) != list(range(len(ins[0]))):
        raise ShapeError(f"perm {perm} is not a permutation of the {len(ins[0])} non-batch axes")
    return [tuple(ins[0][p] for p in perm)]


def _move(fn):
    def run_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
        return [fn(node, xs[0])]

    def run_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
        return [Fx(fn(node, xs[0].m), xs[0].t)]

    return run_float, run_fixed


def _flatten(node: Node, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


def _reshape(node: Node, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], *node.attrs["shape"])


def _transpose(node: Node, x: np.ndarray) -> np.ndarray:
    return x.transpose(0, *[p + 1 for p in node.attrs["perm"]])


# -- ONNX import


def _flatten_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Flatten", name)
    shape = st.shapes[x]
    axis = int(a.get("axis", 1))
    axis = axis + len(shape) + 1 if axis < 0 else axis
    if axis == 0 and _static_batch_one(st):
        axis = 1  # (1, n) either way: Keras exports axis=0 for a model saved with batch 1
    if axis == 0:
        raise unsupported(
            "Flatten", name, "axis=0 merges the batch axis into the features; it equals axis=1 "
            "only for a static batch of 1: export with batch size 1 or flatten with axis=1",
        )  # fmt: skip
    if axis != 1:
        raise unsupported(
            "Flatten", name, f"axis={axis} keeps {axis - 1} feature axes apart from the batch; "
            "lightspeed flattens everything after the batch axis (axis=1): reshape instead",
        )  # fmt: skip
    st.emit(Node(name, "flatten", [x], [onode.output[0]]))


def _static_batch_one(st: ImportState) -> bool:
    """Every model input was exported with a static batch of 1."""
    return bool(st.batch) and all(b == 1 for b in st.batch.values())


def _reshape_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Reshape", name)
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
    batches = {b for b in st.batch.values() if b is not None}
    is_batch = first == BATCH or (first == 0 and not allowzero) or first in batches
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


def _squeeze_import(onode, st: ImportState, a: dict, name: str) -> None:
    from lightspeed.ops.onnx_import import opt_const

    op = onode.op_type
    x = dyn(st, onode.input[0], op, name)
    shape = st.shapes[x]
    axes_c = opt_const(st, onode, 1)
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


def _transpose_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Transpose", name)
    rank = len(st.shapes[x]) + 1
    perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
    if perm[0] != 0:
        form = f"perm {perm}" if "perm" in a else f"no perm (reverse all {rank} axes)"
        raise unsupported(
            "Transpose", name, f"{form} moves the batch axis from first to position "
            f"{perm.index(0)}; lightspeed keeps the batch first: permute only the other axes "
            "(perm=[0, ...], Keras Permute)",
        )  # fmt: skip
    st.emit(
        Node(name, "transpose", [x], [onode.output[0]], attrs={"perm": [p - 1 for p in perm[1:]]})
    )


def _reshape_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    target = b.const(f"{key}_shape", np.array([-1, *node.attrs["shape"]]), dtype=np.int64)
    b.node("Reshape", [ins[0], target], [out], key)


def _transpose_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    b.node("Transpose", ins, [out], key, perm=[0, *[int(p) + 1 for p in node.attrs["perm"]]])


def _op(name: str, shape, fn, doc: str, onnx_import: dict, onnx_export) -> Op:
    run_float, run_fixed = _move(fn)
    return Op(
        name=name,
        roles=(),
        infer_shape=shape,
        run_float=run_float,
        run_fixed=run_fixed,
        auto_precision=_keep_type,
        doc=doc,
        wiring=True,
        trained_precision=_keep_type,
        onnx_import=onnx_import,
        onnx_export=onnx_export,
    )


FLATTEN = _op(
    "flatten", _flatten_shape, _flatten, "flatten all non-batch axes",
    {"Flatten": _flatten_import}, simple("Flatten", axis=1),
)  # fmt: skip
RESHAPE = _op(
    "reshape", _reshape_shape, _reshape, "reshape (attr shape, without batch)",
    {"Reshape": _reshape_import, "Squeeze": _squeeze_import, "Unsqueeze": _squeeze_import},
    _reshape_export,
)  # fmt: skip
TRANSPOSE = _op(
    "transpose", _transpose_shape, _transpose, "permute non-batch axes (attr perm)",
    {"Transpose": _transpose_import}, _transpose_export,
)  # fmt: skip
