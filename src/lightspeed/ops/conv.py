"""Convolution, 1D and 2D (ONNX ``Conv`` semantics, channels-first).

Attributes: ``strides``, ``pads`` (begin..., end...), ``dilations``, ``group``.
The weight is (C_out, C_in / group, *kernel). Each output pixel is a
multiply-accumulate over its patch in (kernel..., channel) order -- hls4ml's
channels-last im2col order, which only matters for saturating accumulators --
with the dense layer's semantics (see :mod:`lightspeed.ops.mac`); padding adds zeros.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lightspeed.errors import ModelError, ShapeError
from lightspeed.fixed import cast
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
    mac_cost,
    quantize_param,
)
from lightspeed.ops.mac import conv_mac, linear_precision, mac, trained_mac_precision
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import (
    ImportState,
    dyn,
    f64,
    opt_const,
    pads,
    set_trained,
    trained,
    unsupported,
)


def conv_attrs(node: Node) -> tuple[tuple[int, ...], list[int], list[int], list[int], int]:
    w = node.params["weight"]
    nd = w.ndim - 2
    k = tuple(int(v) for v in w.shape[2:])
    strides = list(node.attrs.get("strides", [1] * nd))
    pads = list(node.attrs.get("pads", [0] * (2 * nd)))
    dil = list(node.attrs.get("dilations", [1] * nd))
    return k, strides, pads, dil, int(node.attrs.get("group", 1))


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    w = node.params["weight"]
    k, strides, pads, dil, group = conv_attrs(node)
    nd = len(k)
    x = ins[0]
    if len(x) != nd + 1:
        raise ShapeError(f"conv{nd}d expects (channels, {nd} spatial dims), got input shape {x}")
    if x[0] != w.shape[1] * group:
        raise ShapeError(
            f"input has {x[0]} channels but weight expects {w.shape[1]} x group {group}"
        )
    if w.shape[0] % group:
        raise ShapeError(f"{w.shape[0]} output channels are not divisible by group {group}")
    out = []
    for i in range(nd):
        span = dil[i] * (k[i] - 1) + 1
        o = (x[1 + i] + pads[i] + pads[i + nd] - span) // strides[i] + 1
        if o <= 0:
            raise ShapeError(f"kernel {k} does not fit input {x} with pads {pads}")
        out.append(o)
    return [(w.shape[0], *out)]


def patches(x: np.ndarray, node: Node) -> np.ndarray:
    """(B, C, *S) -> (B, *O, *k, C) windows, zero padded (works for ints and floats)."""
    k, strides, pads, dil, _ = conv_attrs(node)
    nd = len(k)
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    xp = np.pad(x, pad_width) if any(pads) else x
    span = [dil[i] * (k[i] - 1) + 1 for i in range(nd)]
    win = sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None))
    sl += tuple(slice(None, None, s) for s in strides) + tuple(slice(None, None, d) for d in dil)
    win = win[sl]
    perm = (0, *range(2, 2 + 2 * nd), 1)
    return win.transpose(perm)


def weight_matrix(w: np.ndarray, group: int, g: int) -> np.ndarray:
    """Group g's weights as (K * C_in_g, C_out_g), rows in (kernel..., channel) order."""
    cout_g = w.shape[0] // group
    wg = np.moveaxis(w[g * cout_g : (g + 1) * cout_g], 1, -1)  # (C_out_g, *k, C_in_g)
    return wg.reshape(cout_g, -1).T


def _run(x: np.ndarray, node: Node, w: np.ndarray, per_group) -> np.ndarray:
    """Shared conv driver: ``per_group(cols, g) -> (rows, C_out_g)``."""
    _, _, _, _, group = conv_attrs(node)
    p = patches(x, node)
    b, out_sp = p.shape[0], p.shape[1 : 1 + w.ndim - 2]
    cin_g = w.shape[1]
    outs = []
    for g in range(group):
        pg = p[..., g * cin_g : (g + 1) * cin_g]
        cols = np.ascontiguousarray(pg).reshape(b * int(np.prod(out_sp)), -1)
        outs.append(per_group(cols, g))
    y = np.concatenate(outs, axis=1).reshape(b, *out_sp, w.shape[0])
    return np.moveaxis(y, -1, 1)


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    w = node.params["weight"]
    group = conv_attrs(node)[4]
    bias = node.params.get("bias")
    cout_g = w.shape[0] // group

    def per_group(cols: np.ndarray, g: int) -> np.ndarray:
        y = cols @ weight_matrix(w, group, g)
        if bias is not None:
            y = y + bias[g * cout_g : (g + 1) * cout_g]
        return y

    return [_run(xs[0], node, w, per_group)]


def _qparams(node: Node, prec: Precision) -> QParams:
    q = {"weight": quantize_param(node.params["weight"], prec["weight"], f"{node.name} weights")}
    if "bias" in node.params:
        q["bias"] = quantize_param(node.params["bias"], prec["bias"], f"{node.name} bias")
    return q


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    w = q["weight"]
    _, strides, pads, dil, group = conv_attrs(node)
    cout_g = w.shape[0] // group
    bias = q.get("bias")
    if group == 1:  # direct convolution kernel (numba), same bits as im2col + mac
        args = (prec["weight"], bias, prec.get("bias"), prec["accum"], strides, pads, dil)
        acc = conv_mac(x.m, x.t, w, *args)
        if acc is not None:
            return [Fx(cast(acc, prec["accum"], prec["result"]), prec["result"])]

    def per_group(cols: np.ndarray, g: int) -> np.ndarray:
        bg = None if bias is None else bias[g * cout_g : (g + 1) * cout_g]
        wm = np.ascontiguousarray(weight_matrix(w, group, g))
        return mac(cols, x.t, wm, prec["weight"], bg, prec.get("bias"), prec["accum"])

    acc = _run(x.m, node, w, per_group)
    return [Fx(cast(acc, prec["accum"], prec["result"]), prec["result"])]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    w = node.params["weight"]
    group = conv_attrs(node)[4]
    # one accumulator type for all groups: stack group matrices side by side
    wm = np.concatenate([weight_matrix(w, group, g) for g in range(group)], axis=1)
    return linear_precision(
        wm, node.params.get("bias"), ctx.in_types[0], ctx.fixed, ctx.options, ctx.out_ranges[0]
    )


def _cost(node: Node, ctx: CostContext) -> Cost:
    w = ctx.qparams["weight"]
    group = conv_attrs(node)[4]
    wm = np.concatenate([weight_matrix(w, group, g) for g in range(group)], axis=1)
    repeats = int(np.prod(ctx.out_shapes[0][1:]))
    return mac_cost(wm, repeats, ctx, ctx.in_types[0])


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    w, g = node.params["weight"], int(node.attrs.get("group", 1))
    wmat = np.concatenate([weight_matrix(w, g, i) for i in range(g)], axis=1)
    return trained_mac_precision(
        node.name, wmat, node.params.get("bias"), ctx.in_types[0], ctx.fixed
    )


def _import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Conv", name)
    if not st.is_const(onode.input[1]):
        raise unsupported("Conv", name, "non-constant weights")
    w = f64(st.const(onode.input[1]))
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
    p = pads(a, shape[1:], k, strides, dil, "Conv", name)
    attrs = {"strides": strides, "pads": p, "dilations": dil, "group": int(a.get("group", 1))}
    node = Node(name, "conv", [x], [onode.output[0]], attrs=attrs, params={"weight": w})
    b = opt_const(st, onode, 2)
    if b is not None:
        node.params["bias"] = f64(b).reshape(-1)
        set_trained(node, "bias", trained(st, onode.input[2]))
    set_trained(node, "weight", trained(st, onode.input[1]))
    st.emit(node)


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
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


CONV = Op(
    name="conv",
    trained_precision=_trained,
    onnx_import={"Conv": _import},
    onnx_export=_export,
    roles=("weight", "bias", "accum", "result"),
    param_roles=("weight", "bias"),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    quantize_params=_qparams,
    cost=_cost,
    doc="1D/2D convolution (ONNX Conv), channels-first; weight (C_out, C_in/group, *kernel)",
)
