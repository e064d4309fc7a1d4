"""Data movement: Flatten, Reshape, Transpose. Values and types pass through unchanged."""

from __future__ import annotations

import numpy as np

from lightspeed.errors import ShapeError
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import AutoContext, Fx, Op, Precision, QParams


def _keep_type(node: Node, ctx: AutoContext) -> Precision:
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


def _op(name: str, shape, fn, doc: str) -> Op:
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
    )


FLATTEN = _op("flatten", _flatten_shape, _flatten, "flatten all non-batch axes")
RESHAPE = _op("reshape", _reshape_shape, _reshape, "reshape (attr shape, without batch)")
TRANSPOSE = _op("transpose", _transpose_shape, _transpose, "permute non-batch axes (attr perm)")
