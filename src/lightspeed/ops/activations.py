"""Piecewise activations: ReLU, LeakyReLU, Clip (ReLU6, HardTanh), HardSwish.

Each casts its (clamped) input to its own ``result`` type, like hls4ml.

HardSwish (ONNX ``x * relu6(x + 3) / 6``) is exact arithmetic with one
quantized constant: ``x <= -3``: 0; ``x >= 3``: ``(result) x``; otherwise
``(result)(x * (x + 3) * k)``, the exact product with ``k = 1/6`` quantized
to the ``param`` type (``weight_bits`` bits in auto mode, 16 in trained mode,
where the result is the exact type of all three branches).
"""

from __future__ import annotations

import math

import numpy as np

from lightspeed.fixed import FixedType, as_exact, cast, overflow, requantize, to_float
from lightspeed.ir.graph import Node
from lightspeed.ops.base import (
    AutoContext,
    AutoOptions,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    TrainedContext,
    exact_capped,
    merge,
    param_type,
    quantize_param,
    result_type,
    same_shape,
)
from lightspeed.ops.onnx_export import Builder, simple
from lightspeed.ops.onnx_import import (
    ImportState,
    affine,
    dyn,
    onnx_attrs,
    opt_const,
    unary,
    unsupported,
)


def _relu_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.maximum(xs[0], 0.0)]


def _relu_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    m = np.maximum(x.m, 0) if x.m.dtype != object else np.where(x.m > 0, x.m, 0)
    # the values now lie in x.t's non-negative half: cast skips overflow scans it cannot need
    src = FixedType(x.t.width - 1, x.t.integer - 1, False) if x.t.signed and x.t.width > 1 else x.t
    return [Fx(cast(m, src, prec["result"]), prec["result"])]


def relu_type(t: FixedType) -> FixedType:
    """The positive half of ``t`` (drop the sign bit): lossless after ReLU and free in hardware."""
    if not t.signed:
        return t
    return FixedType(max(t.width - 1, 1), t.integer - 1, False, t.rounding, t.overflow)


def _relu_auto(node: Node, ctx: AutoContext) -> Precision:
    return merge(ctx.fixed, {"result": relu_type(ctx.in_types[0])})


def _relu_trained(node: Node, ctx: TrainedContext) -> Precision:
    return {"result": ctx.fixed.get("result", relu_type(ctx.in_types[0]))}


def _keep_input_type(node: Node, ctx: TrainedContext) -> Precision:
    """Exact ops whose values stay on the input's grid keep its type unless trained."""
    return {"result": ctx.fixed.get("result", ctx.in_types[0])}


RELU = Op(
    fusable=True,
    name="relu",
    trained_precision=_relu_trained,
    onnx_import={"Relu": unary("relu")},
    onnx_export=simple("Relu"),
    roles=("result",),
    infer_shape=same_shape,
    run_float=_relu_float,
    run_fixed=_relu_fixed,
    auto_precision=_relu_auto,
    doc="max(x, 0), cast to result",
)


def _leaky_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = float(node.attrs.get("alpha", 0.01))
    return [np.where(xs[0] > 0, xs[0], a * xs[0])]


def _leaky_qparams(node: Node, prec: Precision) -> QParams:
    a = np.array(float(node.attrs.get("alpha", 0.01)))
    return {"alpha": quantize_param(a, prec["param"], f"{node.name} alpha")}


def _leaky_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x, res, a_t = xs[0], prec["result"], prec["param"]
    pos = requantize(x.m, x.t.frac, res)
    neg = requantize(x.m * int(q["alpha"]), x.t.frac + a_t.frac, res)
    return [Fx(np.where(x.m > 0, pos, neg), res)]


def _leaky_auto(node: Node, ctx: AutoContext) -> Precision:
    a = float(node.attrs.get("alpha", 0.01))
    lo, hi = ctx.out_ranges[0]
    auto = {
        "param": param_type(np.array([a]), ctx.options.weight_bits),
        "result": result_type(lo, hi, ctx.options),
    }
    return merge(ctx.fixed, auto)


def _leaky_trained(node: Node, ctx: TrainedContext) -> Precision:
    """alpha in 16 bits (exact for alpha = 2**-k); the result holds x and alpha*x exactly."""
    x_t = ctx.in_types[0]
    a = np.array(float(node.attrs.get("alpha", 0.01)))
    p_t = ctx.fixed.get("param") or param_type(a, AutoOptions().weight_bits)
    a_i = int(quantize_param(a, p_t, f"{node.name} alpha"))
    neg = [x_t.min_int * a_i, 0] if x_t.signed else [0]
    pos = x_t.max_int << max(p_t.frac, 0)
    lo, hi = min(*neg, 0), max(*neg, pos, 0)
    return merge(ctx.fixed, {"param": p_t, "result": exact_capped(lo, hi, x_t.frac + p_t.frac)})


def _leaky_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.in_shapes[0]))
    w = ctx.prec["param"].width * ctx.in_types[0].width
    return Cost(params=1, mults=n, bops=n * w)


def _prelu(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "PRelu", name)
    slope = opt_const(st, onode, 1)
    if slope is None or np.unique(slope).size != 1:
        raise unsupported("PRelu", name, "per-channel or non-constant slope; use one shared slope")
    alpha = float(np.asarray(slope).reshape(-1)[0])
    st.emit(Node(name, "leaky_relu", [x], [onode.output[0]], attrs={"alpha": alpha}))


def _leaky_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    alpha = float(to_float(np.asarray(qp["alpha"]), prec["param"]))  # the value the hardware uses
    b.node("LeakyRelu", ins, [out], key, alpha=alpha)


LEAKY_RELU = Op(
    fusable=True,
    name="leaky_relu",
    param_role={"alpha": "param"},
    onnx_import={
        "LeakyRelu": unary("leaky_relu", lambda a: {"alpha": float(a.get("alpha", 0.01))}),
        "PRelu": _prelu,
    },
    onnx_export=_leaky_export,
    roles=("param", "result"),
    param_roles=("param",),
    infer_shape=same_shape,
    run_float=_leaky_float,
    run_fixed=_leaky_fixed,
    auto_precision=_leaky_auto,
    trained_precision=_leaky_trained,
    trained_default=True,
    quantize_params=_leaky_qparams,
    cost=_leaky_cost,
    doc="x if x > 0 else alpha*x; alpha quantized to the 'param' type",
)


def clip_bounds(node: Node) -> tuple[float, float]:
    lo = node.attrs.get("min")
    hi = node.attrs.get("max")
    return (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))


def clip_int_bounds(node: Node, t: FixedType) -> tuple[int, int]:
    """Clamp bounds on the input's integer grid, rounded inwards so they stay inside [min, max]."""
    lo, hi = clip_bounds(node)
    lo_i = t.min_int if lo == -np.inf else max(int(np.ceil(np.ldexp(lo, t.frac))), t.min_int)
    hi_i = t.max_int if hi == np.inf else min(int(np.floor(np.ldexp(hi, t.frac))), t.max_int)
    return lo_i, hi_i


def _clip_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    lo, hi = clip_bounds(node)
    return [np.clip(xs[0], lo, hi)]


def _clip_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    lo, hi = clip_int_bounds(node, x.t)
    m = np.minimum(np.maximum(x.m, lo), hi)
    return [Fx(requantize(m, x.t.frac, prec["result"]), prec["result"])]


def _clip_auto(node: Node, ctx: AutoContext) -> Precision:
    lo, hi = clip_bounds(node)
    t = ctx.in_types[0]
    lo = max(lo, t.min_value)
    hi = min(hi, t.max_value)
    opts = ctx.options
    signed = lo < 0
    mag = max(abs(lo), abs(hi))
    ibits = (int(np.floor(np.log2(mag))) + 1 if mag > 0 else 0) + (1 if signed else 0)
    res = FixedType(max(ibits + max(t.frac, 0), 1), ibits, signed, opts.rounding, opts.overflow)
    return merge(ctx.fixed, {"result": res})


def _clip_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Clip", name)
    lo_c, hi_c = opt_const(st, onode, 1), opt_const(st, onode, 2)
    lo = float(lo_c) if lo_c is not None else a.get("min")
    hi = float(hi_c) if hi_c is not None else a.get("max")
    lo = None if lo is None or lo <= -3.0e38 else float(lo)
    hi = None if hi is None or hi >= 3.0e38 else float(hi)
    if lo == 0.0 and hi is None:
        st.emit(Node(name, "relu", [x], [onode.output[0]]))
    else:
        st.emit(Node(name, "clip", [x], [onode.output[0]], attrs={"min": lo, "max": hi}))


def _hard_sigmoid(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "HardSigmoid", name)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    shape = st.shapes[x]
    mid = f"{onode.output[0]}__affine"
    st.uses[mid] = 1
    affine(st, x, mid, np.full(shape, alpha), np.full(shape, beta), f"{name}_affine", "HardSigmoid")
    st.emit(Node(name, "clip", [mid], [onode.output[0]], attrs={"min": 0.0, "max": 1.0}))


def _clip_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    lo, hi = node.attrs.get("min"), node.attrs.get("max")
    args = [ins[0], b.const(f"{key}_min", lo) if lo is not None else ""]
    if hi is not None:
        args.append(b.const(f"{key}_max", hi))
    b.node("Clip", args, [out], key)


CLIP = Op(
    fusable=True,
    name="clip",
    trained_precision=_keep_input_type,
    onnx_import={"Clip": _clip_import, "HardSigmoid": _hard_sigmoid},
    onnx_export=_clip_export,
    roles=("result",),
    infer_shape=same_shape,
    run_float=_clip_float,
    run_fixed=_clip_fixed,
    auto_precision=_clip_auto,
    doc="clamp(x, min, max) (ReLU6, HardTanh); bounds rounded inwards onto the input grid",
)


# -- hard_swish


def hard_swish_bounds(frac: int) -> tuple[int, int]:
    """(lo, hi): x <= -3 iff m <= lo, x >= 3 iff m >= hi, for x = m * 2**-frac."""
    return math.floor(math.ldexp(-3.0, frac)), math.ceil(math.ldexp(3.0, frac))


def _hswish_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [x * np.clip(x + 3.0, 0.0, 6.0) / 6.0]


def _hswish_qparams(node: Node, prec: Precision) -> QParams:
    return {"k": quantize_param(np.array(1.0 / 6.0), prec["param"], f"{node.name} 1/6")}


def _hswish_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x, res, k_t = xs[0], prec["result"], prec["param"]
    f = x.t.frac
    big = max(f, 0)  # x + 3 exactly at frac max(f, 0)
    m = as_exact(x.m, x.t.width + 3 + big - f + k_t.width)  # room for the exact product
    t = (m << (big - f)) + (3 << big)
    mid = requantize(m * t * int(q["k"]), f + big + k_t.frac, res)
    lo, hi = hard_swish_bounds(f)
    out = np.where(x.m >= hi, requantize(x.m, f, res), np.where(x.m <= lo, 0, mid))
    return [Fx(out.astype(mid.dtype), res)]


def _hswish_auto(node: Node, ctx: AutoContext) -> Precision:
    lo, hi = ctx.out_ranges[0]
    auto = {
        "param": param_type(np.array([1.0 / 6.0]), ctx.options.weight_bits),
        "result": result_type(min(lo, -0.375), hi, ctx.options, signed=True),
    }
    return merge(ctx.fixed, auto)


def _hswish_trained(node: Node, ctx: TrainedContext) -> Precision:
    """k at 16 bits (unless trained) and the exact type of every branch: nothing is rounded."""
    t = ctx.in_types[0]
    k_t = ctx.fixed.get("param") or param_type(np.array([1.0 / 6.0]), 16)
    k = int(quantize_param(np.array(1.0 / 6.0), k_t, f"{node.name} 1/6"))
    f, big = t.frac, max(t.frac, 0)
    frac = f + big + k_t.frac
    lo, hi = hard_swish_bounds(f)
    lo_m, hi_m = max(lo + 1, t.min_int), min(hi - 1, t.max_int)
    vals = [0]
    if t.max_int >= hi:  # x passes through
        vals += [max(hi, t.min_int) << (frac - f), t.max_int << (frac - f)]
    if lo_m <= hi_m:  # the quadratic: its ends and its vertex at x = -1.5
        v = math.ldexp(-1.5, f)
        for m in {lo_m, hi_m, *[min(max(c, lo_m), hi_m) for c in (math.floor(v), math.ceil(v))]}:
            vals.append(m * ((m << (big - f)) + (3 << big)) * k)
    return merge(ctx.fixed, {"param": k_t, "result": exact_capped(min(vals), max(vals), frac)})


def _hswish_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.in_shapes[0]))
    w = ctx.in_types[0].width
    return Cost(params=1, mults=2 * n, adds=n, bops=n * (w * (w + 2) + ctx.prec["param"].width * w))


def _hswish_export(
    b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes
) -> None:
    # ONNX HardSwish needs opset 14; the export is opset 13: x * HardSigmoid(x, 1/6, 1/2),
    # which import fuses back (see _fuse_hard_swish)
    hs = b.fresh(f"{key}_hsig")
    b.node("HardSigmoid", ins, [hs], hs, alpha=1.0 / 6.0, beta=0.5)
    b.node("Mul", [ins[0], hs], [out], key)


def _fuse_hard_swish(g) -> None:
    """x * HardSigmoid(x, alpha=1/6, beta=1/2) -> HardSwish."""
    for hs in g.of_type("HardSigmoid"):
        a = onnx_attrs(hs)
        if abs(float(a.get("alpha", 0.2)) - 1.0 / 6.0) > 1e-7 or float(a.get("beta", 0.5)) != 0.5:
            continue
        mul = g.only_consumer(hs.output[0], "Mul")
        if mul is None or hs.input[0] not in mul.input:
            continue
        g.replace([hs, mul], "HardSwish", [hs.input[0]], mul.output[0])


HARD_SWISH = Op(
    name="hard_swish",
    roles=("param", "result"),
    param_roles=("param",),
    param_role={"k": "param"},
    infer_shape=same_shape,
    run_float=_hswish_float,
    run_fixed=_hswish_fixed,
    auto_precision=_hswish_auto,
    quantize_params=_hswish_qparams,
    cost=_hswish_cost,
    trained_precision=_hswish_trained,
    trained_default=True,
    onnx_import={"HardSwish": unary("hard_swish")},
    onnx_rewrite=_fuse_hard_swish,
    onnx_export=_hswish_export,
    doc="x*relu6(x+3)/6: 0 for x <= -3, x for x >= 3, else x*(x+3)*k with k = 1/6 as 'param'",
)

__all__ = [
    "CLIP",
    "HARD_SWISH",
    "LEAKY_RELU",
    "RELU",
    "hard_swish_bounds",
    "overflow",
    "relu_type",
]
