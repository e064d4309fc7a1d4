"""Message passing on graphs: ``gather_elements`` and ``scatter_add`` with index tensors.

Both ops work on one non-batch axis ``axis`` (IR axes, without the batch) and
take their indices either as a constant (attr ``indices``: a fixed graph, e.g. the
receiver/sender lists of a fully connected interaction network) or as a second
input (a per-event edge list given as a model input: an *index input*).

- ``gather_elements`` (ONNX ``GatherElements``, torch ``gather``): inputs
  ``[x]`` or ``[x, idx]``; output shape = the index shape;
  ``y[..., p, ...] = x[..., idx[..., p, ...], ...]`` along ``axis``. Values and
  type pass through (data movement): wiring in firmware for constant indices,
  one multiplexer per gathered element for an index input.
- ``scatter_add`` (ONNX ``ScatterElements`` with ``reduction="add"`` into zeros,
  torch ``scatter_add``/``scatter_reduce(sum)``; a segment sum when the indices are
  sorted): inputs ``[u]`` or ``[u, idx]``; attr ``shape`` is the output shape,
  ``count`` the most updates that can land on one output element;
  ``y[..., i, ...] = sum_{p: idx[..., p, ...] = i} u[..., p, ...]``, other
  coordinates equal. Fixed point: the **exact** sum (no rounding, no overflow:
  integers at the updates' scale) cast once to the ``result`` type with its
  rounding and overflow modes. Auto precision sizes ``result`` from the
  calibrated range; trained precision makes it the exact sum type (the
  updates' fraction, integer bits for ``count`` updates).

An index input has an unsigned integer type (``ap_uint<k>``, ``k`` bits for
``0 .. n-1``, ``n`` the size of the indexed axis: the compiled maximum number of
nodes). The emulator refuses an index outside ``[0, n)`` by name and limit
(:func:`check_index_inputs`); so does the server. In firmware an index above
``n - 1`` that fits in ``k`` bits selects node ``n - 1`` (gather) or no node
(scatter): nothing a checked request can produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lightspeed.errors import InputError, ModelError, ShapeError
from lightspeed.fixed import FixedType, as_exact, requantize
from lightspeed.ir.graph import Graph, Node, Shape
from lightspeed.ops.base import (
    AutoContext,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    TrainedContext,
    exact_type,
    merge,
    result_type,
)
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import BATCH, ImportState, decode_str, dyn, unsupported

INDEX_OPS = ("gather_elements", "scatter_add")


# -- index helpers


def _axis(node: Node, rank: int) -> int:
    a = int(node.attrs["axis"])
    if not 0 <= a < rank:
        raise ShapeError(f"axis {a} is not a non-batch axis of a rank-{rank} tensor")
    return a


def limit(node: Node, shapes: Mapping[str, Shape]) -> int:
    """The size of the indexed axis: valid indices are 0 .. limit-1."""
    if node.op == "gather_elements":
        return int(shapes[node.inputs[0]][int(node.attrs["axis"])])
    return int(node.attrs["shape"][int(node.attrs["axis"])])


def index_type(n: int) -> FixedType:
    """The type of an index into an axis of ``n`` elements: ap_uint<k> holding 0 .. n-1."""
    k = max(int(n - 1).bit_length(), 1)
    return FixedType(k, k, False, "TRN", "SAT")


def _int_values(ind: Fx | np.ndarray) -> np.ndarray:
    """Integer index values of a fixed-point (or float) index tensor."""
    if isinstance(ind, Fx):
        f = ind.t.frac
        m = as_exact(ind.m)
        return np.asarray(m >> f if f >= 0 else m << -f, dtype=np.int64)
    a = np.asarray(ind, dtype=np.float64)
    return a.astype(np.int64)


def _check_range(node: Node, ind: np.ndarray, n: int, raw: np.ndarray | None = None) -> None:
    """Refuse indices outside [0, n) (and non-integers) naming the node and the limit."""
    bad = (ind < 0) | (ind >= n)
    if raw is not None:
        bad |= raw != np.floor(raw)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        v = raw[pos] if raw is not None else ind[pos]
        raise InputError(
            f"node {node.name!r} ({node.op}): index {v:g} at {pos} (sample, position) is outside "
            f"[0, {n}): the model is compiled for at most {n} nodes on this axis"
        )


def _indices(node: Node, xs: list[Any], n: int) -> np.ndarray:
    """The (batch or 1, *index shape) integer indices of a node: constant or its second input."""
    if len(xs) == 1:
        c = np.asarray(node.attrs["indices"], dtype=np.int64)
        return c[None]
    raw = xs[1]
    if isinstance(raw, Fx):
        ind = _int_values(raw)
        if raw.t.frac > 0:
            whole = (as_exact(raw.m) & ((1 << raw.t.frac) - 1)) == 0
            _check_range(node, ind, n, np.where(whole, ind, ind + 0.5))
        _check_range(node, ind, n)
        return ind
    a = np.asarray(raw, dtype=np.float64)
    _check_range(node, a.astype(np.int64), n, a)
    return a.astype(np.int64)


def _const_shape(node: Node) -> tuple[int, ...]:
    return tuple(np.shape(node.attrs["indices"]))


# -- gather_elements


def _gather_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    x = ins[0]
    ishape = tuple(ins[1]) if len(ins) > 1 else _const_shape(node)
    a = _axis(node, len(x))
    if len(ishape) != len(x):
        raise ShapeError(f"indices {ishape} and data {x} have different ranks")
    if any(i > d for k, (i, d) in enumerate(zip(ishape, x, strict=True)) if k != a):
        raise ShapeError(f"indices {ishape} are larger than the data {x} off the axis {a}")
    if len(ins) == 1:
        c = np.asarray(node.attrs["indices"], dtype=np.int64)
        if c.size and (c.min() < 0 or c.max() >= x[a]):
            raise ShapeError(f"constant indices leave axis {a} (size {x[a]})")
    return [tuple(int(d) for d in ishape)]


def _take_along(x: np.ndarray, ind: np.ndarray, axis: int) -> np.ndarray:
    """x[b, ..., ind[b, ..., p, ...], ...] with the index broadcast over the batch."""
    ind = np.broadcast_to(ind, (x.shape[0], *ind.shape[1:]))
    keep = [slice(None)] + [
        slice(None) if k == axis else slice(0, d) for k, d in enumerate(ind.shape[1:])
    ]
    return np.take_along_axis(x[tuple(keep)], ind, axis=axis + 1)


def _gather_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = int(node.attrs["axis"])
    ind = _indices(node, xs, xs[0].shape[a + 1])
    return [_take_along(xs[0], ind, a)]


def _gather_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    a = int(node.attrs["axis"])
    ind = _indices(node, xs, xs[0].m.shape[a + 1])
    return [Fx(_take_along(xs[0].m, ind, a), xs[0].t)]


def _keep(node: Node, ctx: Any) -> Precision:
    return {}


def _gather_cost(node: Node, ctx: CostContext) -> Cost:
    if len(ctx.in_shapes) == 1:
        return Cost()  # wiring
    n = int(ctx.in_shapes[0][int(node.attrs["axis"])])
    out = int(np.prod(ctx.in_shapes[1]))
    return Cost(adds=out * max(n - 1, 0), bops=out * max(n - 1, 0) * ctx.in_types[0].width)


# -- scatter_add


def _scatter_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    u = ins[0]
    out = tuple(int(d) for d in node.attrs["shape"])
    a = _axis(node, len(out))
    ishape = tuple(ins[1]) if len(ins) > 1 else _const_shape(node)
    if len(u) != len(out) or tuple(ishape) != tuple(u):
        raise ShapeError(f"updates {u}, indices {ishape} and output {out} do not agree")
    if any(d > o for k, (d, o) in enumerate(zip(u, out, strict=True)) if k != a):
        raise ShapeError(f"updates {u} are larger than the output {out} off the axis {a}")
    if len(ins) == 1:
        c = np.asarray(node.attrs["indices"], dtype=np.int64)
        if c.size and (c.min() < 0 or c.max() >= out[a]):
            raise ShapeError(f"constant indices leave axis {a} (size {out[a]})")
    return [out]


def targets(node: Node, ind: np.ndarray, u_shape: tuple[int, ...]) -> np.ndarray:
    """Flat output position (per sample) of every update: (batch or 1, prod(u_shape))."""
    out = tuple(int(d) for d in node.attrs["shape"])
    a = int(node.attrs["axis"])
    coords = list(np.indices(u_shape))
    coords = [np.broadcast_to(c, (ind.shape[0], *u_shape)) for c in coords]
    coords[a] = ind
    return np.ravel_multi_index(tuple(coords), out).reshape(ind.shape[0], -1)


def _scatter(node: Node, u: np.ndarray, ind: np.ndarray) -> np.ndarray:
    out_n = int(np.prod(node.attrs["shape"]))
    b = u.shape[0]
    tgt = targets(node, ind, u.shape[1:])
    y = np.zeros((b, out_n), dtype=u.dtype)
    flat = u.reshape(b, -1)
    if tgt.shape[0] == 1:  # constant indices: one pattern for every sample
        np.add.at(y.T, tgt[0], flat.T)  # y.T is a view: rows of y.T are output positions
    else:
        rows = np.broadcast_to(np.arange(b)[:, None], tgt.shape)
        np.add.at(y, (rows, tgt), flat)
    return y.reshape(b, *node.attrs["shape"])


def _scatter_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    n = limit(node, {})
    return [_scatter(node, xs[0], _indices(node, xs, n))]


def _exact_bounds(node: Node, t: FixedType) -> tuple[int, int]:
    k = int(node.attrs["count"])
    return k * min(t.min_int, 0), k * max(t.max_int, 0)


def _scatter_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    u = xs[0]
    res = prec["result"]
    ind = _indices(node, xs, limit(node, {}))
    lo, hi = _exact_bounds(node, u.t)
    wide = max(-lo, hi).bit_length() >= 62  # the exact sums need Python integers
    m = as_exact(u.m).astype(object if wide else np.int64)
    s = _scatter(node, m, ind)  # the exact sum, at the updates' scale
    return [Fx(requantize(s, u.t.frac, res), res)]


def _scatter_auto(node: Node, ctx: AutoContext) -> Precision:
    lo, hi = ctx.out_ranges[0]
    return merge(ctx.fixed, {"result": result_type(lo, hi, ctx.options)})


def _scatter_trained(node: Node, ctx: TrainedContext) -> Precision:
    t = ctx.in_types[0]
    lo, hi = _exact_bounds(node, t)
    return merge(ctx.fixed, {"result": exact_type(lo, hi, t.frac)})


def _scatter_cost(node: Node, ctx: CostContext) -> Cost:
    n_u = int(np.prod(ctx.in_shapes[0]))
    w = ctx.prec["result"].width
    if len(ctx.in_shapes) == 1:
        return Cost(adds=n_u, bops=n_u * w)
    n = limit(node, {})
    return Cost(adds=n_u * n, bops=n_u * n * w)


def count_of(axis: int, out_shape: Shape, indices: np.ndarray) -> int:
    """Most updates that land on one output element for constant ``indices``."""
    c = np.asarray(indices, dtype=np.int64)
    if not c.size:
        return 0
    node = Node("", "scatter_add", [], [], {"axis": axis, "shape": list(out_shape)})
    return int(np.bincount(targets(node, c[None], c.shape)[0]).max())


# -- index inputs: which graph inputs are indices, and their limits


def _index_uses(graph: Graph, tensor: str, seen: set[str]) -> list[tuple[Node, bool]]:
    """(consumer, reads it as an index) for every use of ``tensor``, looking through wiring."""
    from lightspeed.ops.registry import get_op

    out: list[tuple[Node, bool]] = []
    for n in graph.consumers(tensor):
        if n.op in INDEX_OPS and len(n.inputs) > 1 and n.inputs[1] == tensor:
            out.append((n, True))
        elif get_op(n.op).wiring and len(n.inputs) == 1 and n.outputs[0] not in seen:
            seen.add(n.outputs[0])
            out.extend(_index_uses(graph, n.outputs[0], seen))
        else:
            out.append((n, False))
    return out


def index_limits(graph: Graph) -> dict[str, int]:
    """Graph inputs read only as indices (through wiring) -> the compiled limit (indices < it)."""
    out: dict[str, int] = {}
    for name in graph.inputs:
        uses = _index_uses(graph, name, set())
        if uses and all(is_index for _, is_index in uses):
            out[name] = min(limit(n, graph.shapes) for n, _ in uses)
    return out


def type_index_inputs(graph: Graph, integer_inputs: list[str]) -> None:
    """Give each integer input of an imported model its index type; refuse other uses."""
    for name in integer_inputs:
        uses = _index_uses(graph, name, set())
        data = [n for n, is_index in uses if not is_index]
        if data or not uses:
            where = f"node {data[0].name!r} ({data[0].op})" if data else "nothing"
            raise ModelError(
                f"input {name!r} has an integer type but is read by {where} as data; "
                "lightspeed takes integer inputs only as indices (GatherElements/ScatterElements "
                "index operands, e.g. a per-event edge list): make it a float input otherwise"
            )
        graph.input_types[name] = index_type(min(limit(n, graph.shapes) for n, _ in uses))


def check_index_inputs(graph: Graph, arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse index inputs with values outside [0, limit) or non-integers, naming the limit."""
    for name, n in index_limits(graph).items():
        if name not in arrays:
            continue
        a = np.asarray(arrays[name])
        if a.size == 0:
            continue
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a) | (a != np.floor(a)) | (a < 0) | (a >= n)
        else:
            bad = (a < 0) | (a >= n)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(
                f"input {name!r}: index {a[pos]} at {pos} (sample, position) is outside "
                f"[0, {n}) (integers only): the model is compiled for graphs of at most {n} "
                "nodes; pad smaller graphs (e.g. point unused edges at a padding node), split "
                "bigger ones or recompile for more nodes"
            )


def graph_size_hint(graph: Graph, name: str) -> str:
    """For a shape error on ``name``: what graph size the model is compiled for, if it is one."""
    from lightspeed.ops.registry import get_op  # noqa: F401  (registry loads the ops)

    limits = index_limits(graph)
    if name in limits:
        return (
            f" (an edge list: the model is compiled for at most {int(np.prod(graph.inputs[name]))} "
            "edges; pad shorter lists, e.g. with edges between padding nodes)"
        )
    for n in graph.consumers(name):
        if n.op in INDEX_OPS and n.inputs[0] == name and len(n.inputs) > 1:
            return (
                f" (graph data: the model is compiled for at most {limit(n, graph.shapes)} nodes "
                f"on axis {int(n.attrs['axis']) + 1}; pad smaller graphs)"
            )
    return ""


# -- ONNX import


def _batch_free(c: np.ndarray, name: str, op: str) -> np.ndarray:
    c = np.asarray(c)
    if c.ndim == 0 or c.shape[0] != 1:
        raise unsupported(op, name, f"constant indices of shape {c.shape} (need a batch axis of 1)")
    return c[0].astype(np.int64)


def _gather_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "GatherElements", name)
    rank = len(st.shapes[x]) + 1
    axis = int(a.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise unsupported("GatherElements", name, "indices along the batch axis")
    attrs: dict[str, Any] = {"axis": axis - 1}
    ins = [x]
    if st.is_const(onode.input[1]):
        c = _batch_free(st.const(onode.input[1]), name, "GatherElements")
        n = st.shapes[x][axis - 1]
        attrs["indices"] = np.where(c < 0, c + n, c).tolist()
    else:
        ins.append(dyn(st, onode.input[1], "GatherElements", name))
    st.emit(Node(name, "gather_elements", ins, [onode.output[0]], attrs=attrs))


def _scatter_import(onode, st: ImportState, a: dict, name: str) -> None:
    op = onode.op_type
    data, ind, upd = onode.input[0], onode.input[1], onode.input[2]
    if not st.is_const(data) or np.any(np.asarray(st.const(data)) != 0):
        raise unsupported(
            op, name,
            "a base tensor other than zeros (scatter into zeros, e.g. torch.zeros_like(x)"
            ".scatter_add(...), and add the base afterwards)",
        )  # fmt: skip
    base = np.asarray(st.const(data))
    u = dyn(st, upd, op, name)
    ushape = st.shapes[u]
    rank = len(ushape) + 1
    axis = int(a.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise unsupported(op, name, "indices along the batch axis")
    if base.ndim != rank or base.shape[0] not in (1, BATCH):
        raise unsupported(
            op, name, f"zeros of shape {base.shape} (need (batch, ...) of rank {rank})"
        )
    reduction = decode_str(a.get("reduction", "none"))
    attrs: dict[str, Any] = {"axis": axis - 1, "shape": [int(d) for d in base.shape[1:]]}
    ins = [u]
    if st.is_const(ind):
        c = _batch_free(np.broadcast_to(st.const(ind), (1, *ushape)), name, op)
        n = attrs["shape"][axis - 1]
        c = np.where(c < 0, c + n, c)
        attrs["indices"] = c.tolist()
        attrs["count"] = count_of(axis - 1, attrs["shape"], c)
        if reduction == "none" and attrs["count"] > 1:
            raise unsupported(
                op, name,
                "reduction 'none' with repeated indices (ONNX leaves the result undefined; "
                "torch exports index_add_ this way and onnxruntime then drops updates): use "
                "scatter_add / scatter_reduce(..., 'sum'), which export reduction='add'",
            )  # fmt: skip
    else:
        if reduction != "add":
            raise unsupported(op, name, f"reduction {reduction!r} with indices from an input "
                              "(only 'add': a sum per node)")  # fmt: skip
        ins.append(dyn(st, ind, op, name))
        attrs["count"] = int(ushape[axis - 1])
    if reduction not in ("add", "none"):
        raise unsupported(op, name, f"reduction {reduction!r} (only 'add')")
    st.emit(Node(name, "scatter_add", ins, [onode.output[0]], attrs=attrs))


def _scatter_nd_import(onode, st: ImportState, a: dict, name: str) -> None:
    raise unsupported(
        "ScatterND", name,
        "its indices address the batch axis first and ONNX gives it no batch_dims; write the "
        "aggregation as ScatterElements (torch scatter_add(dim, index, src) or "
        "scatter_reduce(dim, index, src, 'sum')) or, for a fixed graph, as a constant matrix "
        "product (receiver matrix @ messages)",
    )  # fmt: skip


def _expand_import(onode, st: ImportState, a: dict, name: str) -> None:
    """Expand of a computed tensor (e.g. an edge list broadcast over features): repeats
    of size-1 axes, i.e. nearest-neighbour ``resize`` by the target size (wiring)."""
    x = dyn(st, onode.input[0], "Expand", name)
    if not st.is_const(onode.input[1]):
        raise unsupported("Expand", name, "a computed target shape")
    target = [int(v) for v in np.asarray(st.const(onode.input[1])).reshape(-1)]
    shape = st.shapes[x]
    if len(target) != len(shape) + 1:
        raise unsupported("Expand", name, f"target {target} of another rank than the input")
    scales = []
    for d, t in zip(shape, target[1:], strict=True):
        if t in (1, d):
            scales.append(1)
        elif d == 1:
            scales.append(t)
        else:
            raise ShapeError(f"node {name!r} (Expand): {shape} does not expand to {target[1:]}")
    if target[0] not in (1, BATCH) and target[0] not in st.batch.values():
        raise unsupported("Expand", name, "growing the batch axis")
    st.emit(Node(name, "resize", [x], [onode.output[0]], attrs={"scales": scales}))


# -- QONNX export


def _gather_export(b: Builder, node: Node, key: str, ins, out, prec, qp, shapes) -> None:
    ind = ins[1] if len(ins) > 1 else b.const(
        f"{key}_indices", np.asarray(node.attrs["indices"])[None], dtype=np.int64)  # fmt: skip
    if len(ins) > 1:
        raise ModelError(f"node {node.name!r}: QONNX export of an index input is not supported")
    b.node("GatherElements", [ins[0], ind], [out], key, axis=int(node.attrs["axis"]) + 1)


GATHER_ELEMENTS = Op(
    name="gather_elements",
    roles=(),
    infer_shape=_gather_shape,
    run_float=_gather_float,
    run_fixed=_gather_fixed,
    auto_precision=_keep,
    trained_precision=_keep,
    cost=_gather_cost,
    onnx_import={"GatherElements": _gather_import, "Expand": _expand_import},
    onnx_export=_gather_export,
    doc="y = x[.., idx[.., p, ..], ..] along one axis (ONNX GatherElements, torch gather); "
    "constant indices (wiring) or an index input (a mux per element); type passes through",
)
SCATTER_ADD = Op(
    name="scatter_add",
    roles=("result",),
    infer_shape=_scatter_shape,
    run_float=_scatter_float,
    run_fixed=_scatter_fixed,
    auto_precision=_scatter_auto,
    trained_precision=_scatter_trained,
    cost=_scatter_cost,
    onnx_import={"ScatterElements": _scatter_import, "ScatterND": _scatter_nd_import},
    doc="sum of updates per target index along one axis (ONNX ScatterElements add into zeros, "
    "torch scatter_add; a segment sum): exact sum cast to result",
)

__all__ = [
    "GATHER_ELEMENTS",
    "INDEX_OPS",
    "SCATTER_ADD",
    "check_index_inputs",
    "count_of",
    "graph_size_hint",
    "index_limits",
    "index_type",
    "limit",
    "targets",
    "type_index_inputs",
]
