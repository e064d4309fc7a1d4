"""Convolution and transposed convolution, 1D and 2D (ONNX semantics, channels-first).

``conv`` attributes: ``strides``, ``pads`` (begin..., end...), ``dilations``,
``group``. The weight is (C_out, C_in / group, *kernel). Each output pixel is
a multiply-accumulate over its patch in (kernel..., channel) order -- hls4ml's
channels-last im2col order, which only matters for saturating accumulators --
with the dense layer's semantics (see :mod:`lightspeed.ops.mac`); padding adds zeros.

``conv_transpose`` (ONNX ``ConvTranspose``; Keras Conv1D/2DTranspose)
attributes: ``strides``, ``pads``, ``output_padding``, ``dilations``,
``group``; the weight is (C_in, C_out / group, *kernel). Its contract is the equivalent ``conv``
(:func:`transpose_equivalent`): the input with ``stride - 1`` zeros inserted
between neighbours, padded by ``d*(k-1) - pad_begin`` before and ``d*(k-1) -
pad_end + output_padding`` after (negative: cropped), convolved with stride 1,
dilation ``d``, the same groups and the kernel flipped in space with in/out
channels swapped within each group.
Inserted zeros count like padding: they add nothing to the accumulator.
"""

from __future__ import annotations

from typing import Any

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
    is_pow2,
    mac_cost,
    quantize_param,
)
from lightspeed.ops.mac import conv_mac, linear_precision, mac, trained_mac_precision
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import (
    ImportState,
    decode_str,
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


# -- conv_transpose: the equivalent conv on the zero-inserted, padded input


def transpose_attrs(
    node: Node,
) -> tuple[tuple[int, ...], list[int], list[int], list[int], list[int]]:
    """(kernel, strides, pads, output_padding, dilations) of a conv_transpose node."""
    w = node.params["weight"]
    nd = w.ndim - 2
    k = tuple(int(v) for v in w.shape[2:])
    strides = [int(v) for v in node.attrs.get("strides", [1] * nd)]
    pads = [int(v) for v in node.attrs.get("pads", [0] * (2 * nd))]
    out_pad = [int(v) for v in node.attrs.get("output_padding", [0] * nd)]
    dil = [int(v) for v in node.attrs.get("dilations", [1] * nd)]
    return k, strides, pads, out_pad, dil


def transpose_weight(w: np.ndarray, group: int = 1) -> np.ndarray:
    """(C_in, C_out/g, *k) -> the equivalent conv's (C_out, C_in/g, *k), kernels flipped (exact).

    Group ``i`` maps input channels ``i*C_in/g ...`` to output channels ``i*C_out/g ...``.
    """
    nd = w.ndim - 2
    flipped = np.flip(w, axis=tuple(range(2, 2 + nd)))
    cin_g = w.shape[0] // group
    blocks = [flipped[i * cin_g : (i + 1) * cin_g].swapaxes(0, 1) for i in range(group)]
    return np.ascontiguousarray(np.concatenate(blocks, axis=0))


def transpose_group(node: Node) -> int:
    return int(node.attrs.get("group", 1))


def transpose_equivalent(node: Node) -> Node:
    """The stride-1 ``conv`` that :func:`expand` turns a conv_transpose into."""
    _, _, _, _, dil = transpose_attrs(node)
    nd = len(dil)
    group = transpose_group(node)
    params = {"weight": transpose_weight(node.params["weight"], group)}
    if "bias" in node.params:
        params["bias"] = node.params["bias"]
    attrs = {"strides": [1] * nd, "pads": [0] * (2 * nd), "dilations": dil, "group": group}
    return Node(node.name, "conv", node.inputs, node.outputs, attrs=attrs, params=params)


def expand(x: np.ndarray, node: Node, fill: Any = 0) -> np.ndarray:
    """(B, C, *S): zeros inserted between neighbours (stride - 1), then padded or cropped.

    Input element ``j`` of an axis lands at ``d*(k-1) - pad_begin + j*stride``; the
    axis is ``d*(k-1)`` longer than the zero-inserted input at each end, less the pads,
    plus ``output_padding`` at the end. Works for floats, integers and signal arrays.
    """
    k, strides, pads, out_pad, dil = transpose_attrs(node)
    nd = len(k)
    sizes, src, dst = [], [], []
    for i, n in enumerate(x.shape[2:]):
        before = dil[i] * (k[i] - 1) - pads[i]
        after = dil[i] * (k[i] - 1) - pads[i + nd] + out_pad[i]
        length = (n - 1) * strides[i] + 1 + before + after
        pos = before + np.arange(n) * strides[i]
        keep = (pos >= 0) & (pos < length)
        sizes.append(length)
        src.append(np.nonzero(keep)[0])
        dst.append(pos[keep])
    out = np.full((*x.shape[:2], *sizes), fill, dtype=x.dtype)
    lead = (slice(None), slice(None))
    out[lead + np.ix_(*dst)] = x[lead + np.ix_(*src)]
    return out


def _t_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    w = node.params["weight"]
    k, strides, pads, out_pad, dil = transpose_attrs(node)
    nd = len(k)
    x = ins[0]
    if len(x) != nd + 1:
        raise ShapeError(f"conv_transpose{nd}d expects (channels, {nd} spatial dims), got {x}")
    group = transpose_group(node)
    if x[0] != w.shape[0] or x[0] % group:
        raise ShapeError(
            f"input has {x[0]} channels; the weight expects {w.shape[0]} in {group} group(s)"
        )
    out = []
    for i in range(nd):
        if out_pad[i] >= max(strides[i], dil[i]) or min(pads) < 0:
            raise ShapeError(f"output_padding {out_pad} / pads {pads} out of range")
        o = (
            strides[i] * (x[1 + i] - 1)
            + out_pad[i]
            + dil[i] * (k[i] - 1)
            + 1
            - pads[i]
            - pads[i + nd]
        )
        if o <= 0:
            raise ShapeError(f"pads {pads} leave no output for input {x}")
        out.append(o)
    return [(int(w.shape[1]) * group, *out)]


def _t_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return _float(transpose_equivalent(node), [expand(xs[0], node)])


def _t_qparams(node: Node, prec: Precision) -> QParams:
    return _qparams(node, prec)


def equivalent_qparams(q: QParams, node: Node) -> QParams:
    """The equivalent conv's integer params (the weight permuted exactly)."""
    return {**q, "weight": transpose_weight(q["weight"], transpose_group(node))}


def _t_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    return _fixed(
        transpose_equivalent(node), [Fx(expand(x.m, node), x.t)], prec, equivalent_qparams(q, node)
    )


def _t_auto(node: Node, ctx: AutoContext) -> Precision:
    return _auto(transpose_equivalent(node), ctx)


def _t_trained(node: Node, ctx: TrainedContext) -> Precision:
    return _trained(transpose_equivalent(node), ctx)


def _t_cost(node: Node, ctx: CostContext) -> Cost:
    """Like conv, but only the products with real (not inserted or padded) inputs count."""
    eq = transpose_equivalent(node)
    group = transpose_group(node)
    wq = transpose_weight(ctx.qparams["weight"], group)
    cin_g = wq.shape[1]
    real = expand(np.ones((1, *ctx.in_shapes[0]), dtype=np.int64), node)
    pt = patches(real, eq)[0]  # (*O, *k, C): 1 where a real input sits
    mults = adds = 0
    for g in range(group):
        wm = weight_matrix(wq, group, g)  # (P, C_out/g)
        # how often each weight row meets a real input
        uses = pt[..., g * cin_g : (g + 1) * cin_g].reshape(-1, wm.shape[0]).sum(axis=0)
        mults += int(uses @ (~is_pow2(wm)).sum(axis=1))
        adds += int(uses @ (wm != 0).sum(axis=1))
    w_t, acc_t, x_t = ctx.prec["weight"], ctx.prec["accum"], ctx.in_types[0]
    n_out = int(np.prod(ctx.out_shapes[0]))
    adds += n_out if "bias" in ctx.qparams else 0
    params = int(wq.size) + (int(ctx.qparams["bias"].size) if "bias" in ctx.qparams else 0)
    return Cost(
        params=params,
        mults=mults,
        adds=adds,
        bops=mults * w_t.width * x_t.width + adds * acc_t.width,
    )


def _t_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "ConvTranspose", name)
    if not st.is_const(onode.input[1]):
        raise unsupported("ConvTranspose", name, "non-constant weights")
    w = f64(st.const(onode.input[1]))
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise unsupported("ConvTranspose", name, f"{nd}-D (only 1-D and 2-D)")
    shape = st.shapes[x]
    if len(shape) != nd + 1:
        raise ShapeError(f"node {name!r} (ConvTranspose): input {shape} is not (C, {nd} spatial)")
    k = [int(v) for v in w.shape[2:]]
    strides = [int(v) for v in a.get("strides", [1] * nd)]
    dil = [int(v) for v in a.get("dilations", [1] * nd)]
    out_pad = [int(v) for v in a.get("output_padding", [0] * nd)]
    mode = decode_str(a.get("auto_pad", "NOTSET"))
    out_shape = [int(v) for v in a.get("output_shape", [])][-nd:] if "output_shape" in a else None
    if mode in ("SAME_UPPER", "SAME_LOWER") and out_shape is None:
        out_shape = [n * s for n, s in zip(shape[1:], strides, strict=True)]
    if out_shape is not None:
        p_begin, p_end = [], []
        for i in range(nd):
            total = (
                strides[i] * (shape[1 + i] - 1)
                + out_pad[i]
                + (k[i] - 1) * dil[i]
                + 1
                - out_shape[i]
            )
            if total < 0:
                raise unsupported(
                    "ConvTranspose", name, f"output_shape {out_shape} needs negative pads"
                )
            small = total // 2
            upper = mode == "SAME_UPPER"
            p_begin.append(small if upper else total - small)
            p_end.append(total - small if upper else small)
        p = p_begin + p_end
    elif mode == "VALID":
        p = [0] * (2 * nd)
    else:
        p = [int(v) for v in a.get("pads", [0] * (2 * nd))]
    group = int(a.get("group", 1))
    attrs = {
        "strides": strides,
        "pads": p,
        "output_padding": out_pad,
        "dilations": dil,
        "group": group,
    }
    node = Node(name, "conv_transpose", [x], [onode.output[0]], attrs=attrs, params={"weight": w})
    b = opt_const(st, onode, 2)
    if b is not None:
        node.params["bias"] = f64(b).reshape(-1)
        set_trained(node, "bias", trained(st, onode.input[2]))
    set_trained(node, "weight", trained(st, onode.input[1]))
    st.emit(node)


def _t_export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    w = b.quant_const(f"{key}_weight", qp["weight"], prec["weight"])
    inputs = [ins[0], w]
    if "bias" in qp:
        inputs.append(b.quant_const(f"{key}_bias", qp["bias"], prec["bias"]))
    k, strides, pads, out_pad, dil = transpose_attrs(node)
    b.node(
        "ConvTranspose", inputs, [out], key, kernel_shape=list(k), strides=strides, pads=pads,
        output_padding=out_pad, dilations=dil, group=transpose_group(node),
    )  # fmt: skip


CONV_TRANSPOSE = Op(
    name="conv_transpose",
    trained_precision=_t_trained,
    onnx_import={"ConvTranspose": _t_import},
    onnx_export=_t_export,
    roles=("weight", "bias", "accum", "result"),
    param_roles=("weight", "bias"),
    infer_shape=_t_shape,
    run_float=_t_float,
    run_fixed=_t_fixed,
    auto_precision=_t_auto,
    quantize_params=_t_qparams,
    cost=_t_cost,
    doc="1D/2D transposed convolution (ONNX ConvTranspose); weight (C_in, C_out/group, *kernel)",
)
