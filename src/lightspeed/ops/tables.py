"""Lookup-table activations: Sigmoid, Tanh, Softmax.

Tables are part of the layer config (``table_size``, ``table_range``) and of
the contract: every backend indexes the same ROM the same way.

Sigmoid/Tanh: the input range [lo, hi) is cut into ``table_size`` bins of
width ``step = (hi - lo) / table_size`` (a power of two); the index is
``floor((x - lo) / step)`` clamped to [0, size-1]; the entry is ``f`` at the
bin centre, rounded to the ``table`` type; the result casts the entry.

``table_layout="hls4ml"`` (sigmoid/tanh only) lays the table out the way hls4ml's
``nnet::sigmoid``/``nnet::tanh`` do, so that a model can be compared with hls4ml's
C simulation bit for bit: the entry is ``f`` at the bin's *left* edge, evaluated in
float32 (``1 / (1 + expf(-x))``, ``tanhf``), and the index truncates toward zero,
``trunc(x / step) - lo / step`` (so the bin at 0 is two steps wide). The range must
be symmetric, as hls4ml's is.

Softmax (over the last axis): ``d_i = x_i - max(x)``; ``e_i = EXP[idx(d_i)]``
with bins over [-exp_range, 0); ``s = sum(e_i)`` in ``accum``; ``inv =
INV[idx(s)]`` with bins over (0, 2**ceil(log2(n))]; ``y_i = (result)(e_i * inv)``.
The accuracy of these tables is measured in tests and documented in
docs/quantization.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from lightspeed.errors import ConfigError, ShapeError
from lightspeed.fixed import FixedType, quantize_float, requantize
from lightspeed.ir.graph import Node, Shape
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
    merge,
    same_shape,
)
from lightspeed.ops.onnx_export import simple
from lightspeed.ops.onnx_import import ImportState, dyn, unary, unsupported
from lightspeed.ops.recurrent import batch_first_rewrite, import_gru, import_lstm


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


_FUNCS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sigmoid": _sigmoid, "tanh": np.tanh}
DEFAULT_RANGE = {"sigmoid": (-8.0, 8.0), "tanh": (-4.0, 4.0)}


def _log2_exact(v: float, what: str, node: Node) -> int:
    e = math.log2(v) if v > 0 else float("nan")
    if not (e == e and e == int(e)):
        raise ConfigError(
            f"node {node.name!r}: {what} = {v} must be a power of two "
            "(choose table_size and range so that range/size is 2**k)"
        )
    return int(e)


def table_geometry(
    node: Node, default_range: tuple[float, float] | None = None
) -> tuple[float, float, int, int]:
    """(lo, hi, size, log2(step)) of a one-input table (``table_range`` attr, else the default)."""
    lo, hi = node.attrs.get("table_range", default_range or DEFAULT_RANGE[node.op])
    size = int(node.attrs.get("table_size", 1024))
    _log2_exact(size, "table_size", node)
    step_log2 = _log2_exact((hi - lo) / size, "table step (hi-lo)/size", node)
    if lo / 2.0**step_log2 != int(lo / 2.0**step_log2):
        raise ConfigError(
            f"node {node.name!r}: table_range start {lo} is not a multiple of the step"
        )
    return float(lo), float(hi), size, step_log2


LAYOUTS = ("centre", "hls4ml")


def table_layout(node: Node) -> str:
    """The node's ``table_layout`` attr ("centre" unless set), checked."""
    layout = str(node.attrs.get("table_layout", "centre"))
    if layout not in LAYOUTS:
        raise ConfigError(
            f"node {node.name!r}: table_layout {layout!r} is not one of {', '.join(LAYOUTS)}"
        )
    if layout == "hls4ml":
        lo, hi, _, _ = table_geometry(node)
        if lo != -hi:
            raise ConfigError(
                f"node {node.name!r}: table_layout 'hls4ml' needs a range symmetric around 0 "
                f"(hls4ml's tables are), not [{lo}, {hi})"
            )
    return layout


def bin_index(
    m: np.ndarray, frac: int, lo: float, step_log2: int, size: int, to_zero: bool = False
) -> np.ndarray:
    """floor((x - lo) / 2**step_log2) clamped to [0, size-1], for x = m * 2**-frac (exact).

    ``to_zero``: ``trunc(x / step) - lo / step`` instead (the hls4ml layout)."""
    sh = -step_log2 - frac  # x / step = m * 2**sh
    base = round(lo * 2.0**-step_log2)
    if sh >= 0:
        q = m << sh
    elif to_zero:
        q = np.where(m < 0, -((-m) >> -sh), m >> -sh)
    else:
        q = m >> -sh
    return np.clip(q - base, 0, size - 1).astype(np.int64)


def _float32_entries(op: str, x: np.ndarray) -> np.ndarray:
    """hls4ml's table values: ``float`` arithmetic (its sigmoid divides in double and returns
    float). A C library's ``tanhf`` may round an entry one float32 ulp differently from
    NumPy's, which only shows in tables with >= 16 fractional bits (measured: 0 of 1024
    entries differ at hls4ml's default ap_fixed<18,8>, 2 at ap_fixed<18,2,RND>)."""
    x32 = x.astype(np.float32)
    if op == "sigmoid":
        s = 1.0 / (np.float32(1.0) + np.exp(-x32)).astype(np.float64)
        return s.astype(np.float32).astype(np.float64)
    return np.tanh(x32).astype(np.float64)


def unary_table(node: Node, t: FixedType) -> np.ndarray:
    lo, _, size, step_log2 = table_geometry(node)
    if table_layout(node) == "hls4ml":
        values = _float32_entries(node.op, lo + np.arange(size) * 2.0**step_log2)
    else:
        values = _FUNCS[node.op](lo + (np.arange(size) + 0.5) * 2.0**step_log2)
    return quantize_float(values, t, what=f"{node.name} table")


def _unary_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_FUNCS[node.op](xs[0])]


def _unary_qparams(node: Node, prec: Precision) -> QParams:
    return {"table": unary_table(node, prec["table"])}


def _unary_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    lo, _, size, step_log2 = table_geometry(node)
    to_zero = table_layout(node) == "hls4ml"
    idx = bin_index(x.m, x.t.frac, lo, step_log2, size, to_zero)
    entries = q["table"][idx]
    return [Fx(requantize(entries, prec["table"].frac, prec["result"]), prec["result"])]


def _unary_auto(node: Node, ctx: AutoContext) -> Precision:
    table_layout(node)
    bits = ctx.options.table_bits
    t = (
        FixedType(bits, 0, False, "RND", "SAT")
        if node.op == "sigmoid"
        else FixedType(bits, 1, True, "RND", "SAT")
    )
    table = ctx.fixed.get("table", t)
    return merge(ctx.fixed, {"table": table, "result": table})


def _unary_trained(node: Node, ctx: TrainedContext) -> Precision:
    """The auto rule's calibration-free table type; the result is the entry itself."""
    return _unary_auto(node, AutoContext(ctx.in_types, [(0.0, 0.0)], ctx.fixed, AutoOptions(), {}))


def _unary_cost(node: Node, ctx: CostContext) -> Cost:
    size = int(node.attrs.get("table_size", 1024))
    return Cost(params=size, table_bits=size * ctx.prec["table"].width)


def _unary(name: str) -> Op:
    return Op(
        name=name,
        roles=("table", "result"),
        param_roles=("table",),
        infer_shape=same_shape,
        run_float=_unary_float,
        run_fixed=_unary_fixed,
        auto_precision=_unary_auto,
        trained_precision=_unary_trained,
        trained_default=True,
        quantize_params=_unary_qparams,
        cost=_unary_cost,
        doc=f"{name} by a lookup table (table_size, table_range, table_layout attrs)",
        onnx_import={name.capitalize(): unary(name)},
        onnx_export=simple(name.capitalize()),
    )


SIGMOID = _unary("sigmoid")
# recurrent layers import as compositions of registry ops (their gates end in tanh tables)
TANH = replace(
    _unary("tanh"),
    onnx_import={"Tanh": unary("tanh"), "LSTM": import_lstm, "GRU": import_gru},
    onnx_rewrite=batch_first_rewrite,
)


# ---------------------------------------------------------------------------
# softmax


def softmax_geometry(node: Node, n: int) -> tuple[float, int, int, int, int]:
    """(exp_range, exp_size, exp_step_log2, inv_size, inv_step_log2)."""
    r = float(node.attrs.get("exp_range", 8.0))
    es = int(node.attrs.get("exp_table_size", 1024))
    isz = int(node.attrs.get("inv_table_size", 1024))
    _log2_exact(es, "exp_table_size", node)
    _log2_exact(isz, "inv_table_size", node)
    e_step = _log2_exact(r / es, "exp_range/exp_table_size", node)
    top = 2 ** max(math.ceil(math.log2(max(n, 1))), 0)
    i_step = _log2_exact(top / isz, "inverse table step", node)
    return r, es, e_step, isz, i_step


def softmax_tables(node: Node, n: int, exp_t: FixedType, inv_t: FixedType) -> dict[str, np.ndarray]:
    r, es, e_step, isz, i_step = softmax_geometry(node, n)
    ec = -r + (np.arange(es) + 0.5) * 2.0**e_step
    ic = (np.arange(isz) + 0.5) * 2.0**i_step
    return {
        "exp_table": quantize_float(np.exp(ec), exp_t, what=f"{node.name} exp table"),
        "inv_table": quantize_float(1.0 / ic, inv_t, what=f"{node.name} inverse table"),
    }


def _softmax_shape(node: Node, ins: list[Shape]) -> list[Shape]:
    if node.attrs.get("axis", -1) not in (-1, len(ins[0])):
        raise ShapeError("softmax is supported over the last axis only")
    node.attrs["n"] = int(ins[0][-1])  # row length sizes the inverse table
    return [ins[0]]


def _softmax_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return [e / e.sum(axis=-1, keepdims=True)]


def _softmax_qparams(node: Node, prec: Precision) -> QParams:
    n = int(node.attrs["n"])
    return softmax_tables(node, n, prec["exp_table"], prec["inv_table"])


def _softmax_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    n = x.m.shape[-1]
    _, es, e_step, isz, i_step = softmax_geometry(node, n)
    r = float(node.attrs.get("exp_range", 8.0))
    d = x.m - x.m.max(axis=-1, keepdims=True)
    e = q["exp_table"][bin_index(d, x.t.frac, -r, e_step, es)]
    et, acc, inv_t = prec["exp_table"], prec["accum"], prec["inv_table"]
    s = requantize(e.sum(axis=-1, keepdims=True), et.frac, acc)
    inv = q["inv_table"][bin_index(s, acc.frac, 0.0, i_step, isz)]
    y = requantize(e * inv, et.frac + inv_t.frac, prec["result"])
    return [Fx(y, prec["result"])]


# auto exp tables get one bin per input step up to this many entries (2**14 * 18 bits = 288 kbit)
MAX_AUTO_EXP_TABLE = 2**14


def auto_exp_table_size(node: Node, x_t: FixedType) -> int:
    """Exp-table entries so that a bin is no wider than the input's lsb (at least 1024).

    The largest input always reads the last bin; with 1024 bins over [-8, 0) a runner-up
    closer than 1/128 reads the same entry, the outputs tie and the first class wins.
    """
    r = float(node.attrs.get("exp_range", 8.0))
    want = max(r * 2.0 ** min(x_t.frac, 62), 1.0)
    return int(min(max(2 ** math.ceil(math.log2(want)), 1024), MAX_AUTO_EXP_TABLE))


def _softmax_auto(node: Node, ctx: AutoContext) -> Precision:
    bits = ctx.options.table_bits
    n = int(node.attrs["n"])
    x_t = ctx.in_types[0]
    if "exp_table_size" not in node.attrs:  # a size the user or the source model gave wins
        node.attrs["exp_table_size"] = auto_exp_table_size(node, x_t)
    exp_t = ctx.fixed.get("exp_table", FixedType(bits, 0, False, "RND", "SAT"))
    inv_t = ctx.fixed.get("inv_table", FixedType(bits, 1, False, "RND", "SAT"))
    acc_int = max(n, 1).bit_length() + max(exp_t.integer, 0)
    # outputs keep the gap between the two largest entries (about one input lsb times the
    # top probability >= 1/n): rounding must not tie them, else the first class wins
    frac = max(ctx.options.frac_bits, x_t.frac + math.ceil(math.log2(max(n, 2))) + 1)
    frac = min(frac, exp_t.frac + inv_t.frac)  # never more than the exact product
    auto = {
        "exp_table": exp_t,
        "accum": FixedType(acc_int + exp_t.frac, acc_int, False),
        "inv_table": inv_t,
        "result": FixedType(frac + 1, 1, False, ctx.options.rounding, "SAT"),
    }
    return merge(ctx.fixed, auto)


def _softmax_trained(node: Node, ctx: TrainedContext) -> Precision:
    """Softmax needs no calibration: auto's table, accumulator and result types with defaults."""
    return _softmax_auto(
        node, AutoContext(ctx.in_types, [(0.0, 0.0)], ctx.fixed, AutoOptions(), {})
    )


def _softmax_cost(node: Node, ctx: CostContext) -> Cost:
    n = int(ctx.in_shapes[0][-1])
    rows = int(np.prod(ctx.in_shapes[0][:-1])) if len(ctx.in_shapes[0]) > 1 else 1
    es = int(node.attrs.get("exp_table_size", 1024))
    isz = int(node.attrs.get("inv_table_size", 1024))
    w = ctx.prec["exp_table"].width * ctx.prec["inv_table"].width
    return Cost(
        params=es + isz,
        mults=n * rows,
        adds=(2 * n - 1) * rows,
        bops=n * rows * w,
        table_bits=es * ctx.prec["exp_table"].width + isz * ctx.prec["inv_table"].width,
    )


def _softmax_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Softmax", name)
    rank = len(st.shapes[x]) + 1
    axis = int(a.get("axis", -1 if st.opset >= 13 else 1))
    if axis < 0:
        axis += rank
    if axis != rank - 1:
        raise unsupported("Softmax", name, f"axis {axis} (only the last axis)")
    st.emit(Node(name, "softmax", [x], [onode.output[0]], attrs={"axis": -1}))


SOFTMAX = Op(
    name="softmax",
    onnx_import={"Softmax": _softmax_import},
    onnx_export=simple("Softmax", axis=-1),
    roles=("exp_table", "accum", "inv_table", "result"),
    param_roles=("exp_table", "inv_table"),
    infer_shape=_softmax_shape,
    run_float=_softmax_float,
    run_fixed=_softmax_fixed,
    auto_precision=_softmax_auto,
    trained_precision=_softmax_trained,
    trained_default=True,
    quantize_params=_softmax_qparams,
    cost=_softmax_cost,
    doc="softmax over the last axis via exp and inverse lookup tables",
)
