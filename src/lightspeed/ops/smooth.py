"""Table-based smooth activations: ELU, SELU, Softplus, Softsign, GELU.

The contract (every backend follows it bit for bit). Tables use the index
rule of :mod:`lightspeed.ops.tables` (Sigmoid/Tanh): the range [lo, hi)
(``table_range``) is cut into ``table_size`` bins of width ``step = 2**k``;
the index is ``floor((x - lo) / step)`` clamped to [0, size-1] (so x < lo
reads entry 0); the entry is the function at the bin centre, rounded to the
``table`` type. For an input ``x`` of any type:

- ``elu`` (attr ``alpha``, default 1.0; default range (-8, 0), 1024 bins):
  ``x > 0``: ``(result) x``; ``x <= 0``: ``(result) TABLE[idx(x)]`` with
  entries ``alpha * (exp(c) - 1)``.
- ``selu`` (attrs ``alpha`` = 1.67326319217681884765625, ``gamma`` =
  1.05070102214813232421875, ONNX's float32 defaults; default range (-8, 0)):
  ``x > 0``: ``(result)(x * gamma_q)``, the exact product with ``gamma``
  quantized to the ``param`` type; ``x <= 0``: ``(result) TABLE[idx(x)]``
  with entries ``gamma * alpha * (exp(c) - 1)`` (float gamma).
- ``softplus`` (default range (-8, 8)): ``x >= hi``: ``(result) x``
  (softplus(x) - x < 2**-11 there); else ``(result) TABLE[idx(x)]`` with
  entries ``log1p(exp(c))``.
- ``softsign`` (default range (-16, 16)): ``(result) TABLE[idx(x)]`` with
  entries ``c / (1 + |c|)``, no pass-through (inputs beyond the range read the
  end entries, within 1/17 of the limits +-1; softsign saturates slowly, so a
  uniform table trades resolution near 0, 2**-6 here, against the tail).
- ``gelu`` (attr ``approximate`` "none" or "tanh", ONNX ``Gelu``; default
  range (-4, 4)): ``x >= hi``: ``(result) x`` (x - gelu(x) < 2**-12 there);
  else ``(result) TABLE[idx(x)]`` with entries ``c * Phi(c)`` (``Phi`` the
  normal CDF, or its tanh approximation).

Automatic precision: the ``table`` type has ``AutoOptions.table_bits`` bits,
integer bits just holding the largest entry, signed where entries are
negative; ``result`` is sized from the calibrated range (``result_type``) but
covers at least the table type; SELU's ``param`` has ``weight_bits`` bits.
Trained mode (a documented default, no calibration): the same table and
``param`` types, and a ``result`` that holds both branches exactly (the
table entries and the pass-through ``x``, or ``x * gamma_q``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lightspeed.fixed import FixedType, quantize_float, requantize
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
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import OnnxGraph, decode_str, unary
from lightspeed.ops.tables import bin_index, table_geometry

SELU_ALPHA = 1.67326319217681884765625  # float32(1.6732632423543772), ONNX's default
SELU_GAMMA = 1.05070102214813232421875  # float32(1.0507009873554805), ONNX's default
DEFAULT_RANGE = {
    "elu": (-8.0, 0.0),
    "selu": (-8.0, 0.0),
    "softplus": (-8.0, 8.0),
    "softsign": (-16.0, 16.0),
    "gelu": (-4.0, 4.0),
}
_ERF = np.frompyfunc(math.erf, 1, 1)


def _alpha(node: Node) -> float:
    return float(node.attrs.get("alpha", SELU_ALPHA if node.op == "selu" else 1.0))


def _gamma(node: Node) -> float:
    return float(node.attrs.get("gamma", SELU_GAMMA))


def geometry(node: Node) -> tuple[float, float, int, int]:
    """(lo, hi, size, log2(step)) of the node's table."""
    return table_geometry(node, DEFAULT_RANGE[node.op])


def direct_branch(op: str) -> str | None:
    """Where x passes through the table: "pos" (x > 0), "hi" (x >= hi) or None (never)."""
    return {"elu": "pos", "selu": "pos", "softplus": "hi", "gelu": "hi"}.get(op)


def gelu(v: np.ndarray, approximate: str = "none") -> np.ndarray:
    """x * Phi(x) (exact, by erf) or its tanh approximation, in float64."""
    v = np.asarray(v, dtype=np.float64)
    if approximate == "tanh":
        return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))
    return 0.5 * v * (1.0 + np.asarray(_ERF(v / math.sqrt(2.0)), dtype=np.float64))


def _table_func(node: Node, v: np.ndarray) -> np.ndarray:
    """The function the table samples (the negative branch of ELU/SELU)."""
    if node.op == "elu":
        return _alpha(node) * np.expm1(v)
    if node.op == "selu":
        return _gamma(node) * _alpha(node) * np.expm1(v)
    if node.op == "softsign":
        return v / (1.0 + np.abs(v))
    if node.op == "gelu":
        return gelu(v, str(node.attrs.get("approximate", "none")))
    return np.logaddexp(0.0, v)


def _table_values(node: Node) -> np.ndarray:
    lo, _, size, step_log2 = geometry(node)
    return _table_func(node, lo + (np.arange(size) + 0.5) * 2.0**step_log2)


def pass_threshold(node: Node, frac: int) -> int:
    """Softplus: the smallest integer m with m * 2**-frac >= hi (x passes through from there)."""
    _, hi, _, _ = geometry(node)
    return math.ceil(math.ldexp(hi, frac))


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    if direct_branch(node.op) != "pos":
        return [_table_func(node, x)]
    pos = x * _gamma(node) if node.op == "selu" else x
    return [np.where(x > 0, pos, _table_func(node, np.minimum(x, 0.0)))]


def _qparams(node: Node, prec: Precision) -> QParams:
    q = {"table": quantize_float(_table_values(node), prec["table"], what=f"{node.name} table")}
    if node.op == "selu":
        q["gamma"] = quantize_param(np.array(_gamma(node)), prec["param"], f"{node.name} gamma")
    return q


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x, res, tt = xs[0], prec["result"], prec["table"]
    lo, _, size, step_log2 = geometry(node)
    table = requantize(q["table"][bin_index(x.m, x.t.frac, lo, step_log2, size)], tt.frac, res)
    if node.op == "selu":
        pos = requantize(x.m * int(q["gamma"]), x.t.frac + prec["param"].frac, res)
    else:
        pos = requantize(x.m, x.t.frac, res)
    branch = direct_branch(node.op)
    if branch is None:
        return [Fx(table, res)]
    take_x = x.m >= pass_threshold(node, x.t.frac) if branch == "hi" else x.m > 0
    return [Fx(np.where(take_x, pos, table), res)]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    opts = ctx.options
    tt = ctx.fixed.get("table") or param_type(_table_values(node), opts.table_bits)
    auto: Precision = {"table": tt}
    if node.op == "selu":
        auto["param"] = param_type(np.array([_gamma(node)]), opts.weight_bits)
    lo, hi = ctx.out_ranges[0]
    signed = lo < 0 or tt.signed
    res = result_type(lo, hi, opts, signed=signed)
    need = tt.integer + (1 if signed and not tt.signed else 0)  # hold every table entry
    if res.integer < need:
        res = FixedType(min(need + opts.frac_bits, 64), need, signed, opts.rounding, opts.overflow)
    auto["result"] = res
    return merge(ctx.fixed, auto)


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    """Default table (and SELU gamma) types as auto's; a result holding both branches exactly."""
    opts = AutoOptions()
    x_t = ctx.in_types[0]
    tt = ctx.fixed.get("table") or param_type(_table_values(node), opts.table_bits)
    prec: Precision = {"table": tt}
    if direct_branch(node.op) is None:  # softsign: the table entry is the result
        return merge(ctx.fixed, {**prec, "result": tt})
    pos_frac, pos_hi = x_t.frac, x_t.max_int  # the pass-through branch (x > 0, or x >= hi)
    if node.op == "selu":
        prec["param"] = ctx.fixed.get("param") or param_type(np.array([_gamma(node)]), 16)
        g = int(quantize_param(np.array(_gamma(node)), prec["param"], "gamma"))
        pos_frac, pos_hi = x_t.frac + prec["param"].frac, x_t.max_int * g
    frac = max(pos_frac, tt.frac)
    lo = min(tt.min_int << (frac - tt.frac), 0)
    hi = max(pos_hi << (frac - pos_frac), tt.max_int << (frac - tt.frac), 0)
    prec["result"] = exact_capped(lo, hi, frac)
    return merge(ctx.fixed, prec)


def _cost(node: Node, ctx: CostContext) -> Cost:
    size = int(node.attrs.get("table_size", 1024))
    c = Cost(params=size, table_bits=size * ctx.prec["table"].width)
    if node.op == "selu":
        n = int(np.prod(ctx.in_shapes[0]))
        c.params += 1
        c.mults = n
        c.bops = n * ctx.prec["param"].width * ctx.in_types[0].width
    return c


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    attrs: dict[str, Any] = {}
    if node.op in ("elu", "selu"):
        attrs["alpha"] = _alpha(node)
    if node.op == "selu":
        attrs["gamma"] = _gamma(node)
    if node.op == "gelu":
        # ONNX Gelu exists from opset 20; lightspeed's exports are opset 13 or later, so the
        # float form is written out (x * 0.5 * (1 + erf(x / sqrt 2))); import fuses it back
        _export_gelu(b, node, key, ins[0], out)
        return
    onnx_op = {"elu": "Elu", "selu": "Selu", "softplus": "Softplus", "softsign": "Softsign"}
    b.node(onnx_op[node.op], ins, [out], key, **attrs)


def _export_gelu(b: Builder, node: Node, key: str, x: str, out: str) -> None:
    def mul(a: str, c: str, tag: str) -> str:
        t = b.fresh(f"{key}_{tag}")
        b.node("Mul", [a, c], [t], t)
        return t

    if str(node.attrs.get("approximate", "none")) == "tanh":  # torch's form
        cube = mul(x, mul(x, x, "sq"), "cube")
        inner = b.fresh(f"{key}_inner")
        b.node("Add", [x, mul(cube, b.const(f"{key}_k", 0.044715), "k")], [inner], inner)
        s = b.fresh(f"{key}_tanh")
        b.node("Tanh", [mul(inner, b.const(f"{key}_c", math.sqrt(2.0 / math.pi)), "s")], [s], s)
    else:
        d, s = b.fresh(f"{key}_div"), b.fresh(f"{key}_erf")
        b.node("Div", [x, b.const(f"{key}_sqrt2", math.sqrt(2.0))], [d], d)
        b.node("Erf", [d], [s], s)
    a = b.fresh(f"{key}_add")
    b.node("Add", [s, b.const(f"{key}_one", 1.0)], [a], a)
    b.node("Mul", [mul(x, a, "mul"), b.const(f"{key}_half", 0.5)], [out], key)


def _op(name: str, onnx_type: str, attrs_fn, doc: str, rewrite=None) -> Op:
    selu = name == "selu"
    return Op(
        name=name,
        roles=("table", "param", "result") if selu else ("table", "result"),
        param_roles=("table", "param") if selu else ("table",),
        param_role={"gamma": "param"} if selu else {},
        infer_shape=same_shape,
        run_float=_float,
        run_fixed=_fixed,
        auto_precision=_auto,
        quantize_params=_qparams,
        cost=_cost,
        trained_precision=_trained,
        trained_default=True,
        onnx_import={onnx_type: unary(name, attrs_fn)},
        onnx_export=_export,
        onnx_rewrite=rewrite,
        doc=doc,
    )


ELU = _op(
    "elu",
    "Elu",
    lambda a: {"alpha": float(a.get("alpha", 1.0))},
    "x if x > 0 else alpha*(exp(x)-1) by a lookup table over [lo, 0) (alpha, table attrs)",
)
SELU = _op(
    "selu",
    "Selu",
    lambda a: {
        "alpha": float(a.get("alpha", SELU_ALPHA)),
        "gamma": float(a.get("gamma", SELU_GAMMA)),
    },
    "gamma_q*x if x > 0 else a lookup table of gamma*alpha*(exp(x)-1) over [lo, 0)",
)
SOFTPLUS = _op(
    "softplus",
    "Softplus",
    None,
    "x if x >= hi else a lookup table of log(1+exp(x)) over [lo, hi)",
)


# -- ONNX rewrites: the float forms exporters write for GELU and Softsign, fused into one node


def _fuse_gelu(g: OnnxGraph) -> None:
    """x*0.5*(1+erf(x/sqrt2)) in any of torch's operand orders -> Gelu (approximate none)."""
    for erf in g.of_type("Erf"):
        pre = g.producer(erf.input[0])
        if pre is None or not g.single_use(erf.input[0]):
            continue
        x = g.scaled_input(pre, 1.0 / math.sqrt(2.0))
        if x is None:
            continue
        add = g.only_consumer(erf.output[0], "Add")
        if add is None or g.const_operand(add, erf.output[0]) != 1.0:
            continue
        found = g.times_half_x(add.output[0], x)
        if found is None:
            continue
        final, dropped = found
        g.replace([pre, erf, add, *dropped], "Gelu", [x], final, approximate="none")


def _fuse_tanh_gelu(g: OnnxGraph) -> None:
    """0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) as torch writes it -> Gelu (approximate tanh)."""
    for th in g.of_type("Tanh"):
        inner = g.producer(th.input[0])
        if inner is None or not g.single_use(th.input[0]):
            continue
        s = g.scaled_input(inner, math.sqrt(2.0 / math.pi))
        add0 = g.producer(s) if s is not None else None
        if s is None or add0 is None or add0.op_type != "Add" or not g.single_use(s):
            continue
        cubic = g.cubic_term(add0, 0.044715)
        if cubic is None:
            continue
        x, cube_nodes = cubic
        add = g.only_consumer(th.output[0], "Add")
        if add is None or g.const_operand(add, th.output[0]) != 1.0:
            continue
        found = g.times_half_x(add.output[0], x)
        if found is None:
            continue
        final, dropped = found
        nodes = [*cube_nodes, add0, inner, th, add, *dropped]
        g.replace(nodes, "Gelu", [x], final, approximate="tanh")


def _fuse_softsign(g: OnnxGraph) -> None:
    """x / (1 + |x|) (torch's Softsign export) -> Softsign."""
    for div in g.of_type("Div"):
        den = g.producer(div.input[1])
        if den is None or den.op_type != "Add" or not g.single_use(div.input[1]):
            continue
        ab = next((g.producer(t) for t in den.input if g.producer(t) is not None), None)
        if ab is None or ab.op_type != "Abs" or not g.single_use(ab.output[0]):
            continue
        if g.const_operand(den, ab.output[0]) != 1.0 or ab.input[0] != div.input[0]:
            continue
        g.replace([ab, den, div], "Softsign", [div.input[0]], div.output[0])


def _rewrite_gelu(g: OnnxGraph) -> None:
    _fuse_gelu(g)
    _fuse_tanh_gelu(g)


SOFTSIGN = _op(
    "softsign",
    "Softsign",
    None,
    "x/(1+|x|) by a lookup table over [lo, hi) (inputs beyond read the end entries)",
    rewrite=_fuse_softsign,
)
GELU = _op(
    "gelu",
    "Gelu",
    lambda a: {"approximate": decode_str(a.get("approximate", "none"))},
    "x if x >= hi else a lookup table of x*Phi(x) (erf, or approximate='tanh') over [lo, hi)",
    rewrite=_rewrite_gelu,
)

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "SELU_ALPHA",
    "SELU_GAMMA",
    "SOFTPLUS",
    "SOFTSIGN",
    "direct_branch",
    "gelu",
    "geometry",
    "pass_threshold",
]
