"""Standalone BatchNorm as a per-channel scale and shift: ``y = x*scale + shift``.

Used where BatchNorm cannot be folded into a preceding dense/conv layer.
Semantics are those of a multiply-accumulate with fan-in one
(see :mod:`lightspeed.ops.mac`); the channel axis is the first non-batch
axis (channels-first), or the only one for vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.errors import ConfigError, ModelError, ShapeError
from lightspeed.fixed import overflow, requantize
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
    quantize_param,
    same_shape,
)
from lightspeed.ops.mac import linear_precision, trained_mac_precision
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import ImportState, affine, dyn, f64, opt_const, unsupported


def _bcast(v: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel vector shaped to broadcast over (B, C, *spatial)."""
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    c = node.params["scale"].shape[0]
    if ins[0][0] != c:
        raise ShapeError(f"batchnorm has {c} channels but its input shape is {ins[0]}")
    return [ins[0]]


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [x * _bcast(node.params["scale"], x.ndim) + _bcast(node.params["shift"], x.ndim)]


def _qparams(node: Node, prec: Precision) -> QParams:
    return {
        "scale": quantize_param(node.params["scale"], prec["weight"], f"{node.name} scale"),
        "shift": quantize_param(node.params["shift"], prec["bias"], f"{node.name} shift"),
    }


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x, acc_t = xs[0], prec["accum"]
    nd = x.m.ndim
    prod = requantize(x.m * _bcast(q["scale"], nd), x.t.frac + prec["weight"].frac, acc_t)
    shift = requantize(q["shift"], prec["bias"].frac, acc_t)
    acc = overflow(prod + _bcast(shift, nd), acc_t)
    return [Fx(requantize(acc, acc_t.frac, prec["result"]), prec["result"])]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    w = node.params["scale"][None, :]
    return linear_precision(
        w, node.params["shift"], ctx.in_types[0], ctx.fixed, ctx.options, ctx.out_ranges[0]
    )


def _cost(node: Node, ctx: CostContext) -> Cost:
    per_c = int(np.prod(ctx.in_shapes[0][1:])) if len(ctx.in_shapes[0]) > 1 else 1
    mults = int(np.count_nonzero(~is_pow2(ctx.qparams["scale"]))) * per_c
    n = int(np.prod(ctx.in_shapes[0]))
    return Cost(
        params=2 * node.params["scale"].size,
        mults=mults,
        adds=n,
        bops=mults * ctx.prec["weight"].width * ctx.in_types[0].width + n * ctx.prec["accum"].width,
    )


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    missing = [r for r in ("weight", "bias") if r not in ctx.fixed]
    if missing:
        # a float BatchNorm (or Mul/Add by a float constant) that could not be folded without
        # changing trained weights: its constants were never quantized, so nothing states a type
        raise ConfigError(
            f"node {node.name!r} (batchnorm: a BatchNormalization or a Mul/Add by a float "
            f"constant) has no trained type for its {' and '.join(missing)}: they were not "
            "quantized in training, and folding them into the quantized layer before would "
            "change its trained weights. Give the types in the config (layers: "
            f"{{{node.name}: {{weight: 'ap_fixed<16,6>', bias: 'ap_fixed<16,6>'}}}}), fold the "
            "BatchNorm into the layer during quantization-aware training (as QKeras "
            "QConv2DBatchnorm does), or use --precision auto"
        )
    w = node.params["scale"][None, :]
    return trained_mac_precision(node.name, w, node.params["shift"], ctx.in_types[0], ctx.fixed)


def _import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "BatchNormalization", name)
    if a.get("training_mode", 0):
        raise unsupported("BatchNormalization", name, "training_mode=1; export the model in eval()")
    if any(o for o in onode.output[1:]):
        raise unsupported("BatchNormalization", name, "running-statistics outputs (training mode)")
    gamma, beta, mean, var = (opt_const(st, onode, i) for i in (1, 2, 3, 4))
    if gamma is None or beta is None or mean is None or var is None:
        raise ModelError(f"node {name!r} (BatchNormalization) needs scale, B, mean and var inputs")
    eps = float(a.get("epsilon", 1e-5))
    s = f64(gamma) / np.sqrt(f64(var) + eps)
    sh = f64(beta) - f64(mean) * s
    shape = st.shapes[x]
    cshape = (-1,) + (1,) * (len(shape) - 1)
    scale = np.broadcast_to(s.reshape(cshape), shape).copy()
    shift = np.broadcast_to(sh.reshape(cshape), shape).copy()
    affine(st, x, onode.output[0], scale, shift, name, "BatchNormalization")


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    nd = len(shapes[node.inputs[0]])
    cshape = (-1,) + (1,) * (nd - 1)
    s = b.quant_const(f"{key}_scale", qp["scale"].reshape(cshape), prec["weight"])
    sh = b.quant_const(f"{key}_shift", qp["shift"].reshape(cshape), prec["bias"])
    mid = b.fresh(f"{out}_mul")
    b.node("Mul", [ins[0], s], [mid], key)
    b.node("Add", [mid, sh], [out], key)  # same name: merged into this batchnorm on import


BATCHNORM = Op(
    name="batchnorm",
    trained_precision=_trained,
    param_role={"scale": "weight", "shift": "bias"},
    onnx_import={"BatchNormalization": _import},
    onnx_export=_export,
    roles=("weight", "bias", "accum", "result"),
    param_roles=("weight", "bias"),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    quantize_params=_qparams,
    cost=_cost,
    doc="per-channel x*scale + shift (unfoldable BatchNorm); weight=scale, bias=shift types",
)


def _affine_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0] * node.params["scale"] + node.params["shift"]]


def _affine_unfolded(node: Node, *args: Any) -> Any:
    raise ModelError(
        f"node {node.name!r}: an affine node reached quantization; run "
        "lightspeed.ir.passes.fold_affine (every frontend does) to fold it"
    )


AFFINE = Op(
    name="affine",
    roles=(),
    infer_shape=same_shape,
    run_float=_affine_float,
    run_fixed=_affine_unfolded,
    auto_precision=_affine_unfolded,
    internal=True,
    doc="import-time x*scale + shift with full-shape constants; ir.passes.fold_affine folds it "
    "into the layer before or turns it into a batchnorm",
)
