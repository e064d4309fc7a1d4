"""Pooling, 1D and 2D, channels-first: MaxPool, AveragePool, GlobalAveragePool.

MaxPool keeps the input type by default (exact). Average pooling sums the
window exactly, multiplies by the constant ``1/K`` held in ``recip_bits``
fractional bits (exact when K is a power of two), and casts to ``result``.
Padding: MaxPool pads with -inf; AveragePool counts padded zeros
(``count_include_pad=1``) and refuses the other convention.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lightspeed.errors import ShapeError, UnsupportedOpError
from lightspeed.fixed import FixedType, as_exact, cast, requantize
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import (
    AutoContext,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    TrainedContext,
    exact_capped,
    merge,
    result_type,
)
from lightspeed.ops.onnx_export import Builder, simple
from lightspeed.ops.onnx_import import ImportState, dyn, opt_const, pads, unsupported

RECIP_BITS = 18


def pool_attrs(node: Node, in_shape: Shape) -> tuple[list[int], list[int], list[int]]:
    nd = len(in_shape) - 1
    if node.op == "global_avgpool":
        return list(in_shape[1:]), [1] * nd, [0] * (2 * nd)
    k = [int(v) for v in node.attrs["kernel_shape"]]
    strides = [int(v) for v in node.attrs.get("strides", k)]
    pads = [int(v) for v in node.attrs.get("pads", [0] * (2 * nd))]
    if len(k) != nd:
        raise ShapeError(f"kernel {k} does not match input {in_shape}")
    if node.op == "avgpool" and any(pads) and not node.attrs.get("count_include_pad", 0):
        raise UnsupportedOpError(
            f"node {node.name!r}: AveragePool with padding and count_include_pad=0 is not "
            "supported; export with count_include_pad=1 or pad explicitly"
        )
    return k, strides, pads


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    x = ins[0]
    if len(x) not in (2, 3):
        raise ShapeError(f"pooling expects (channels, W) or (channels, H, W), got {x}")
    k, strides, pads = pool_attrs(node, x)
    nd = len(k)
    out = [(x[1 + i] + pads[i] + pads[i + nd] - k[i]) // strides[i] + 1 for i in range(nd)]
    if min(out) <= 0:
        raise ShapeError(f"pool kernel {k} does not fit input {x}")
    return [(x[0], *out)]


def windows(x: np.ndarray, node: Node, pad_value) -> np.ndarray:
    """(B, C, *S) -> (B, C, *O, K) flattened windows."""
    k, strides, pads = pool_attrs(node, x.shape[1:])
    nd = len(k)
    if any(pads):
        pw = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
        x = np.pad(x, pw, constant_values=pad_value)
    win = sliding_window_view(x, k, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None), *[slice(None, None, s) for s in strides])]
    return win.reshape(*win.shape[: 2 + nd], -1)


def _window_size(node: Node, in_shape: Shape) -> int:
    return int(np.prod(pool_attrs(node, in_shape)[0]))


def _max_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [windows(xs[0], node, -np.inf).max(axis=-1)]


def _tiled_max(x: np.ndarray, node: Node) -> np.ndarray | None:
    """Non-overlapping, unpadded windows (the common case): element-wise maxima of
    strided views, one per kernel offset (much faster than a reduction over windows)."""
    k, strides, pads = pool_attrs(node, x.shape[1:])
    if any(pads) or list(strides) != list(k) or x.dtype == object:
        return None
    out = [n // kk for n, kk in zip(x.shape[2:], k, strict=True)]
    m = None
    for offs in np.ndindex(*k):
        view = x[
            (
                slice(None),
                slice(None),
                *[slice(o, o + n * kk, kk) for o, n, kk in zip(offs, out, k, strict=True)],
            )
        ]
        m = view.copy() if m is None else np.maximum(m, view, out=m)
    return m


def _max_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    low = x.t.min_int - 1  # below every representable value: acts as -inf padding
    m = _tiled_max(x.m, node)
    if m is None:
        m = windows(x.m, node, low).max(axis=-1)
    return [Fx(cast(m, x.t, prec["result"]), prec["result"])]


def _max_auto(node: Node, ctx: AutoContext | TrainedContext) -> Precision:
    return merge(ctx.fixed, {"result": ctx.in_types[0]})


def _max_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.out_shapes[0])) * (_window_size(node, ctx.in_shapes[0]) - 1)
    return Cost(adds=n, bops=n * ctx.in_types[0].width)


# -- ONNX import


def _pool_import(onode, st: ImportState, a: dict, name: str) -> None:
    op = onode.op_type
    x = dyn(st, onode.input[0], op, name)
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
    p = pads(a, shape[1:], k, strides, dil, op, name)
    if a.get("ceil_mode", 0):
        for i in range(nd):
            span = shape[1 + i] + p[i] + p[i + nd] - k[i]
            if span % strides[i]:
                raise unsupported(
                    op, name, "ceil_mode=1 with a partial last window; use ceil_mode=0"
                )
    attrs: dict = {"kernel_shape": k, "strides": strides, "pads": p}
    ir_op = "maxpool" if op == "MaxPool" else "avgpool"
    if ir_op == "avgpool":
        attrs["count_include_pad"] = int(a.get("count_include_pad", 0)) if any(p) else 1
    st.emit(Node(name, ir_op, [x], [onode.output[0]], attrs=attrs))


def _global_pool_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], onode.op_type, name)
    shape = st.shapes[x]
    if onode.op_type == "GlobalAveragePool":
        st.emit(Node(name, "global_avgpool", [x], [onode.output[0]]))
        return
    k = list(shape[1:])
    attrs = {"kernel_shape": k, "strides": [1] * len(k), "pads": [0] * (2 * len(k))}
    st.emit(Node(name, "maxpool", [x], [onode.output[0]], attrs=attrs))


def _reduce_mean_import(onode, st: ImportState, a: dict, name: str) -> None:
    """ReduceMean over every spatial axis is a global average pool (+ reshape without keepdims)."""
    x = dyn(st, onode.input[0], "ReduceMean", name)
    shape = st.shapes[x]
    rank = len(shape) + 1
    axes_c = opt_const(st, onode, 1)
    axes = [int(v) for v in (axes_c.reshape(-1) if axes_c is not None else a.get("axes", []))]
    axes = sorted(v + rank if v < 0 else v for v in axes)
    if len(shape) < 2 or axes != list(range(2, rank)):
        from lightspeed.ops.dense import reduce_sum  # other axes: a dense layer of 1/n

        reduce_sum(onode, st, a, name)
        return
    out = onode.output[0]
    if int(a.get("keepdims", 1)):
        st.emit(Node(name, "global_avgpool", [x], [out]))
        return
    mid = f"{out}__pooled"
    st.emit(Node(name, "global_avgpool", [x], [mid]))
    st.emit(Node(f"{name}_squeeze", "reshape", [mid], [out], attrs={"shape": [shape[0]]}))


def _pool_export(onnx_op: str):
    def emit(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
        a = node.attrs
        k = list(a["kernel_shape"])
        kw: dict = {
            "kernel_shape": k,
            "strides": list(a.get("strides", k)),
            "pads": list(a.get("pads", [0] * 2 * len(k))),
        }
        if onnx_op == "AveragePool":
            kw["count_include_pad"] = int(a.get("count_include_pad", 0))
        b.node(onnx_op, ins, [out], key, **kw)

    return emit


MAXPOOL = Op(
    name="maxpool",
    trained_precision=_max_auto,
    onnx_import={"MaxPool": _pool_import, "GlobalMaxPool": _global_pool_import},
    onnx_export=_pool_export("MaxPool"),
    roles=("result",),
    infer_shape=_shape,
    run_float=_max_float,
    run_fixed=_max_fixed,
    auto_precision=_max_auto,
    cost=_max_cost,
    doc="max over each window (kernel_shape, strides, pads)",
)


def recip(k: int) -> tuple[int, int]:
    """1/k as (integer, fractional bits): exact for powers of two, else RECIP_BITS bits (rounded)."""
    if k & (k - 1) == 0:
        return 1, k.bit_length() - 1
    frac = RECIP_BITS + k.bit_length()
    return round(2.0**frac / k), frac


def _avg_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    k = _window_size(node, xs[0].shape[1:])
    return [windows(xs[0], node, 0.0).sum(axis=-1) / k]


def _avg_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    k = _window_size(node, x.m.shape[1:])
    r, rfrac = recip(k)
    s = as_exact(windows(x.m, node, 0), k.bit_length()).sum(axis=-1)
    m = as_exact(s, r.bit_length()) * r
    y = requantize(m, x.t.frac + rfrac, prec["result"])
    if node.op == "global_avgpool":
        y = y.reshape(*y.shape[:2], *([1] * (y.ndim - 2)))
    return [Fx(y, prec["result"])]


def _avg_auto(node: Node, ctx: AutoContext) -> Precision:
    lo, hi = ctx.out_ranges[0]
    return merge(ctx.fixed, {"result": result_type(lo, hi, ctx.options)})


def _avg_trained(node: Node, ctx: TrainedContext) -> Precision:
    """The exact window sum times the held ``1/K``, rounded nowhere (a trained default).

    Exact for power-of-two K; otherwise 1/K has RECIP_BITS bits (see :func:`recip`).
    """
    x_t = ctx.in_types[0]
    k = _window_size(node, ctx.in_shapes[0])
    r, rfrac = recip(k)
    lo, hi = min(x_t.min_int * k * r, 0), max(x_t.max_int * k * r, 0)
    return merge(ctx.fixed, {"result": exact_capped(lo, hi, x_t.frac + rfrac)})


def _avg_cost(node: Node, ctx: CostContext) -> Cost:
    k = _window_size(node, ctx.in_shapes[0])
    n = int(np.prod(ctx.out_shapes[0]))
    return Cost(
        adds=n * (k - 1), mults=0 if k & (k - 1) == 0 else n, bops=n * k * ctx.in_types[0].width
    )


AVGPOOL = Op(
    name="avgpool",
    onnx_import={"AveragePool": _pool_import},
    onnx_export=_pool_export("AveragePool"),
    roles=("result",),
    infer_shape=_shape,
    run_float=_avg_float,
    run_fixed=_avg_fixed,
    auto_precision=_avg_auto,
    trained_precision=_avg_trained,
    trained_default=True,
    cost=_avg_cost,
    doc="mean over each window: exact sum times 1/K, cast to result",
)


def _gap_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    x = ins[0]
    if len(x) < 2:
        raise ShapeError(f"GlobalAveragePool expects (channels, spatial...), got {x}")
    return [(x[0], *([1] * (len(x) - 1)))]


def _gap_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)]


GLOBAL_AVGPOOL = Op(
    name="global_avgpool",
    onnx_import={"GlobalAveragePool": _global_pool_import, "ReduceMean": _reduce_mean_import},
    onnx_export=simple("GlobalAveragePool"),
    roles=("result",),
    infer_shape=_gap_shape,
    run_float=_gap_float,
    run_fixed=_avg_fixed,
    auto_precision=_avg_auto,
    trained_precision=_avg_trained,
    trained_default=True,
    cost=_avg_cost,
    doc="mean over all spatial positions (keeps singleton dims like ONNX)",
)

__all__ = ["AVGPOOL", "GLOBAL_AVGPOOL", "MAXPOOL", "FixedType"]
