"""Per-sample normalization over the last axis: LayerNorm and RMSNorm.

``layernorm``: ``y = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta``;
``rmsnorm``: ``y = x / sqrt(mean(x**2) + eps) * gamma (+ beta)``; both over the
last axis only (ONNX ``axis = -1``; normalizing over several trailing axes is
refused). The statistics come from each sample at run time, so the fixed-point
form needs a division by N, an inverse square root and two run-time products.

The contract (every backend follows it bit for bit), for a row of N values x
(type ``x_t`` with F fractional bits); ``R = 17 + ceil(log2 N)`` and
``RECIP = round(2**R / N)`` (an 18-bit constant, exact when N is a power of two,
where the multiply is a shift):

1. (layernorm) ``mean = (accum)(sum(x) * RECIP * 2**-R)``, the sum exact;
   ``d_i = (accum)(x_i - mean)``. (rmsnorm) ``d_i = x_i``, no cast.
2. ``v = (var)(sum(d_i**2) * RECIP * 2**-R + EPS)``, squares and sum exact,
   ``EPS = eps`` rounded to the ``var`` type; then ``v = max(v, 1 lsb)``. The
   ``var`` type is unsigned with an even number of integer bits ``Iv``.
3. Inverse square root by a normalized lookup table: with ``Wv`` the width of
   ``var``, ``s`` is the even shift that brings the top set bit of ``v`` to bit
   ``Wv-1`` or ``Wv-2`` (``s = (Wv - bitlen(v)) & ~1``), ``u = v << s`` (a
   mantissa in [1/4, 1) of 2**Wv), ``idx = u >> (Wv - T)`` with ``T =
   log2(table_size)``; ``TABLE[i] = 1/sqrt(max((i + 0.5) / 2**T, 1/4))``
   rounded to the ``table`` type; ``inv = (inv)(TABLE[idx] * 2**(s/2) *
   2**(-Iv/2))``. The shift is exact, so the table's relative error (about
   2**-(T-1) of the mantissa) is the same at every scale: no calibration of the
   variance range is needed.
4. ``z_i = (norm)(d_i * inv)``; ``y_i = (result)(z_i * gamma_i + beta_i)``,
   the product and the sum exact, one cast (gamma in the ``weight`` type, beta
   in the ``bias`` type).

Automatic precision (``AutoOptions``): ``accum`` has ``F + ceil(log2 N)``
fractional bits (the mean is exact when N is a power of two) and one integer bit
more than x; ``var`` holds the largest square exactly in its integer bits
(rounded up to even) with ``2*F + 2`` fractional bits (at most 52 bits in all);
``table`` is ``ufixed<table_bits, 2>``; ``inv`` is exact (no rounding of the
shifted entry); ``norm`` holds ``|z| <= sqrt(N)`` with ``frac_bits + 4``
fractional bits; weights and biases have ``weight_bits``; ``result`` comes from
the calibrated range. Trained mode uses the same rules (documented defaults)
with an exact ``result``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lightspeed.errors import ConfigError, ShapeError
from lightspeed.fixed import FixedType, as_exact, quantize_float, requantize
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
    exact_capped,
    merge,
    param_type,
    quantize_param,
    result_type,
)
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import ImportState, OnnxGraph, dyn, f64, opt_const, unsupported

DEFAULT_EPS = 1e-5
DEFAULT_TABLE_SIZE = 1024
MAX_VAR_BITS = 52  # the normalization's bit-length is computed in float64 (exact below 2**53)


# ---------------------------------------------------------------------------
# the constants of the contract


def recip(n: int) -> tuple[int, int]:
    """(RECIP, R): ``1/n`` as the integer ``round(2**R / n)`` at R fractional bits."""
    r = 17 + max(n - 1, 0).bit_length()
    return (2 * (1 << r) + n) // (2 * n), r


def table_bits_log2(node: Node) -> int:
    """T = log2(table_size) of the inverse-square-root table."""
    size = int(node.attrs.get("table_size", DEFAULT_TABLE_SIZE))
    t = size.bit_length() - 1
    if size < 4 or size != 1 << t:
        raise ConfigError(f"node {node.name!r}: table_size {size} must be a power of two >= 4")
    return t


def inv_sqrt_table(node: Node, t: FixedType) -> np.ndarray:
    """The ROM: 1/sqrt of the bin centres of a mantissa in [0, 1), floored at 1/4."""
    bits = table_bits_log2(node)
    c = np.maximum((np.arange(1 << bits) + 0.5) / float(1 << bits), 0.25)
    return quantize_float(1.0 / np.sqrt(c), t, what=f"{node.name} inverse square root table")


def check_var_type(node: Node, v: FixedType) -> None:
    if v.signed or v.integer % 2 or v.width > MAX_VAR_BITS:
        raise ConfigError(
            f"layer {node.name!r}: var type {v} must be unsigned with an even number of integer "
            f"bits and at most {MAX_VAR_BITS} bits (e.g. ap_ufixed<32,8>), so that the inverse "
            "square root is an exact shift of a table entry"
        )


def eps_int(node: Node, v: FixedType) -> int:
    eps = float(node.attrs.get("epsilon", DEFAULT_EPS))
    return int(quantize_float(np.array([eps]), v, what=f"{node.name} epsilon")[0])


def norm_shift(v: np.ndarray, width: int) -> np.ndarray:
    """The even left shift s with ``v << s`` in [2**(width-2), 2**width) (v >= 1, < 2**53)."""
    bitlen = np.frexp(np.asarray(v, dtype=np.float64))[1].astype(np.int64)
    return (width - bitlen) & ~np.int64(1)


# ---------------------------------------------------------------------------
# shapes and float semantics


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    x = ins[0]
    if not x:
        raise ShapeError(f"node {node.name!r} ({node.op}): needs at least one axis")
    n = int(x[-1])
    for p in ("weight", "bias"):
        if p in node.params and np.asarray(node.params[p]).shape != (n,):
            raise ShapeError(
                f"node {node.name!r} ({node.op}): {p} has shape "
                f"{np.asarray(node.params[p]).shape}, expected ({n},) (the last axis)"
            )
    node.attrs["n"] = n
    return [x]


def _gamma_beta(node: Node, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = node.params.get("weight")
    b = node.params.get("bias")
    return (np.ones(n) if g is None else np.asarray(g, dtype=np.float64)), (
        np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    )


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = np.asarray(xs[0], dtype=np.float64)
    eps = float(node.attrs.get("epsilon", DEFAULT_EPS))
    d = x - x.mean(axis=-1, keepdims=True) if node.op == "layernorm" else x
    z = d / np.sqrt((d * d).mean(axis=-1, keepdims=True) + eps)
    g, b = _gamma_beta(node, x.shape[-1])
    return [z * g + b]


# ---------------------------------------------------------------------------
# fixed-point semantics (the contract above)


def _qparams(node: Node, prec: Precision) -> QParams:
    q = {"table": inv_sqrt_table(node, prec["table"])}
    for p in ("weight", "bias"):
        if p in node.params:
            q[p] = quantize_param(node.params[p], prec[p], f"{node.name} {p}")
    return q


def centred(node: Node, x: Fx, prec: Precision, n: int) -> Fx:
    """Step 1: ``d = (accum)(x - (accum)(sum(x) * RECIP))`` (layernorm) or x itself (rmsnorm)."""
    if node.op != "layernorm":
        return x
    acc = prec["accum"]
    rc, r = recip(n)
    s = as_exact(x.m, n.bit_length()).sum(axis=-1, keepdims=True)
    mean = requantize(as_exact(s, rc.bit_length()) * rc, x.t.frac + r, acc)
    f = max(x.t.frac, acc.frac)
    diff = as_exact(x.m, f - x.t.frac + 1) * (1 << (f - x.t.frac))
    diff = diff - as_exact(mean, f - acc.frac + 1) * (1 << (f - acc.frac))
    return Fx(requantize(diff, f, acc), acc)


def variance(node: Node, d: Fx, prec: Precision, n: int) -> np.ndarray:
    """Step 2: ``v = max((var)(sum(d**2) * RECIP + EPS), 1)`` as integers of the var type."""
    vt = prec["var"]
    check_var_type(node, vt)
    rc, r = recip(n)
    m = as_exact(d.m, d.t.width + n.bit_length() + rc.bit_length())
    s2 = (m * m).sum(axis=-1, keepdims=True) * rc
    f = 2 * d.t.frac + r
    e = eps_int(node, vt)
    top = max(f, vt.frac)
    total = as_exact(s2, top - f) * (1 << (top - f)) + (e << (top - vt.frac))
    v = requantize(total, top, vt)
    return np.maximum(v, 1)


def inverse_sqrt(node: Node, v: np.ndarray, prec: Precision, q: QParams) -> np.ndarray:
    """Step 3: ``inv`` integers (of the inv type) from the var integers ``v``."""
    vt, tt = prec["var"], prec["table"]
    bits = table_bits_log2(node)
    v64 = np.asarray(v).astype(np.int64)
    s = norm_shift(v64, vt.width)
    u = v64 << s
    idx = u >> (vt.width - bits) if vt.width >= bits else u << (bits - vt.width)
    e = as_exact(q["table"][idx], vt.width // 2 + 1)
    shifted = e << (s // 2)
    return requantize(shifted, tt.frac + vt.integer // 2, prec["inv"])


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    n = x.m.shape[-1]
    d = centred(node, x, prec, n)
    inv = inverse_sqrt(node, variance(node, d, prec, n), prec, q)
    it, nt, res = prec["inv"], prec["norm"], prec["result"]
    z = requantize(as_exact(d.m, it.width) * as_exact(inv, d.t.width), d.t.frac + it.frac, nt)
    if "weight" in q:
        wt = prec["weight"]
        prod = as_exact(z, wt.width) * as_exact(q["weight"], nt.width)
        f = nt.frac + wt.frac
    else:
        prod, f = as_exact(z), nt.frac
    if "bias" in q:
        bt = prec["bias"]
        top = max(f, bt.frac)
        prod = as_exact(prod, top - f + 1) * (1 << (top - f)) + as_exact(q["bias"], top) * (
            1 << (top - bt.frac)
        )
        f = top
    return [Fx(requantize(prod, f, res), res)]


# ---------------------------------------------------------------------------
# automatic and trained precision


def _signed_int_bits(t: FixedType) -> int:
    """Integer bits of x excluding the sign (|x| < 2**that)."""
    return t.integer - (1 if t.signed else 0)


def _auto_types(node: Node, x_t: FixedType, fixed: Precision, opts: AutoOptions) -> Precision:
    n = int(node.attrs["n"])
    lg = max(n - 1, 0).bit_length()
    out: Precision = {}
    if node.op == "layernorm":
        acc = fixed.get("accum") or FixedType(
            min(x_t.width + lg + 1 + (0 if x_t.signed else 1), 64),
            _signed_int_bits(x_t) + 2,
            True,
            "RND",
            "SAT",
        )
        out["accum"] = acc
        d_t = acc
    else:
        d_t = x_t
    mag = _signed_int_bits(d_t) if d_t.signed else d_t.integer  # |d| < 2**mag
    iv = 2 * mag + (2 * mag) % 2
    fv = min(2 * d_t.frac + 2, MAX_VAR_BITS - iv)
    vt = fixed.get("var") or FixedType(max(iv + fv, 1), iv, False, "RND", "SAT")
    check_var_type(node, vt)
    out["var"] = vt
    tt = fixed.get("table") or FixedType(opts.table_bits, 2, False, "RND", "SAT")
    out["table"] = tt
    # exact: the largest entry (<= 2) shifted by up to Wv/2, at frac table + Iv/2
    inv_frac = tt.frac + vt.integer // 2
    inv_hi = (tt.max_int << (vt.width // 2)) + 1
    out["inv"] = fixed.get("inv") or exact_capped(0, inv_hi, inv_frac)
    zmag = math.ceil(math.log2(math.sqrt(max(n, 1)))) + 1
    out["norm"] = fixed.get("norm") or FixedType(
        zmag + 1 + opts.frac_bits + 4, zmag + 1, True, "RND", "SAT"
    )
    g, b = _gamma_beta(node, n)
    if "weight" in node.params:
        out["weight"] = fixed.get("weight") or param_type(g, opts.weight_bits)
    if "bias" in node.params:
        out["bias"] = fixed.get("bias") or param_type(b, opts.weight_bits)
    return out


def _auto(node: Node, ctx: AutoContext) -> Precision:
    prec = _auto_types(node, ctx.in_types[0], ctx.fixed, ctx.options)
    lo, hi = ctx.out_ranges[0]
    prec["result"] = result_type(lo, hi, ctx.options)
    return merge(ctx.fixed, prec)


def _exact_result(node: Node, prec: Precision) -> FixedType:
    nt = prec["norm"]
    n = int(node.attrs["n"])
    g, b = _gamma_beta(node, n)
    lo, hi, f = nt.min_int, nt.max_int, nt.frac
    if "weight" in prec:
        wt = prec["weight"]
        gq = quantize_param(g, wt, "gamma")
        gm = int(np.max(np.abs(gq))) if gq.size else 0
        lo, hi, f = -max(-lo, hi) * gm, max(-lo, hi) * gm, f + wt.frac
    if "bias" in prec:
        bt = prec["bias"]
        bq = quantize_param(b, bt, "beta")
        top = max(f, bt.frac)
        lo = (lo << (top - f)) + (int(np.min(bq)) << (top - bt.frac))
        hi = (hi << (top - f)) + (int(np.max(bq)) << (top - bt.frac))
        f = top
    return exact_capped(min(lo, 0), max(hi, 0), f)


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    prec = _auto_types(node, ctx.in_types[0], ctx.fixed, AutoOptions())
    prec["result"] = ctx.fixed.get("result") or _exact_result(node, merge(ctx.fixed, prec))
    return merge(ctx.fixed, prec)


def _cost(node: Node, ctx: CostContext) -> Cost:
    shape = ctx.in_shapes[0]
    n = int(shape[-1])
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    size = 1 << table_bits_log2(node)
    p = ctx.prec
    x_w = ctx.in_types[0].width
    d_w = p["accum"].width if "accum" in p else x_w
    mults = rows * (n * (3 if "weight" in p else 2) + 2)  # squares, z, gamma; two RECIPs
    bops = rows * n * (d_w * d_w + d_w * p["inv"].width)
    if "weight" in p:
        bops += rows * n * p["norm"].width * p["weight"].width
    return Cost(
        params=size + n * (("weight" in p) + ("bias" in p)),
        mults=mults,
        adds=rows * n * (3 if node.op == "layernorm" else 2),
        bops=bops,
        table_bits=size * p["table"].width,
    )


# ---------------------------------------------------------------------------
# ONNX import and export


def _import(onode: Any, st: ImportState, a: dict, name: str) -> None:
    op_type = onode.op_type
    x = dyn(st, onode.input[0], op_type, name)
    rank = len(st.shapes[x]) + 1
    axis = int(a.get("axis", -1))
    if axis < 0:
        axis += rank
    if axis != rank - 1:
        raise unsupported(
            op_type,
            name,
            f"normalizing from axis {axis} over {rank - axis} axes; lightspeed normalizes over "
            "the last axis only (reshape so the normalized features are one last axis)",
        )
    if any(t for t in onode.output[1:]):
        raise unsupported(op_type, name, "its Mean/InvStdDev outputs are used")
    n = int(st.shapes[x][-1])
    params: dict[str, np.ndarray] = {}
    for key, c in (("weight", opt_const(st, onode, 1)), ("bias", opt_const(st, onode, 2))):
        if c is not None:
            params[key] = np.broadcast_to(f64(c).reshape(-1), (n,)).copy()
    op = "layernorm" if op_type == "LayerNormalization" else "rmsnorm"
    eps = float(a.get("epsilon", DEFAULT_EPS))
    st.emit(Node(name, op, [x], [onode.output[0]], attrs={"epsilon": eps}, params=params))


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    # LayerNormalization is opset 17 and RMSNormalization opset 23; lightspeed's exports are
    # opset 13: write the float form, which the import fuses back into one node
    n = int(node.attrs["n"])
    g, beta = _gamma_beta(node, n)
    x = ins[0]
    names = ("mean", "d", "sq", "ms", "add", "sqrt", "z", "zg")
    t = {k: b.fresh(f"{key}_{k}") for k in names}
    d = x
    if node.op == "layernorm":
        b.node("ReduceMean", [x], [t["mean"]], t["mean"], axes=[-1], keepdims=1)
        b.node("Sub", [x, t["mean"]], [t["d"]], t["d"])
        d = t["d"]
    b.node("Mul", [d, d], [t["sq"]], t["sq"])
    b.node("ReduceMean", [t["sq"]], [t["ms"]], t["ms"], axes=[-1], keepdims=1)
    eps = b.const(f"{key}_eps", float(node.attrs.get("epsilon", DEFAULT_EPS)))
    b.node("Add", [t["ms"], eps], [t["add"]], t["add"])
    b.node("Sqrt", [t["add"]], [t["sqrt"]], t["sqrt"])
    b.node("Div", [d, t["sqrt"]], [t["z"]], t["z"])
    if "bias" not in node.params:
        b.node("Mul", [t["z"], b.const(f"{key}_scale", g)], [out], key)
        return
    b.node("Mul", [t["z"], b.const(f"{key}_scale", g)], [t["zg"]], t["zg"])
    b.node("Add", [t["zg"], b.const(f"{key}_bias", beta)], [out], key)


# -- the float forms exporters write (torch's RMSNorm, LayerNorm before opset 17)


def _reduced_axis(g: OnnxGraph, rm: Any) -> int | None:
    """The single axis a keepdims ReduceMean reduces (attribute or opset-18 input), else None."""
    attrs = {a.name: a for a in rm.attribute}
    if "keepdims" in attrs and attrs["keepdims"].i == 0:
        return None
    axes: list[int] | None
    if len(rm.input) > 1 and rm.input[1]:
        c = g.consts.get(rm.input[1])
        axes = None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]
    else:
        axes = list(attrs["axes"].ints) if "axes" in attrs else None
    return axes[0] if axes is not None and len(axes) == 1 else None


def _square_of(g: OnnxGraph, t: str) -> tuple[str, Any] | None:
    """(x, node) when tensor ``t`` is ``x*x`` or ``x**2``."""
    sq = g.producer(t)
    if sq is None or not g.single_use(t):
        return None
    if sq.op_type == "Mul" and len(sq.input) == 2 and sq.input[0] == sq.input[1]:
        return sq.input[0], sq
    if sq.op_type == "Pow" and g.scalar(sq.input[1]) == 2.0:
        return sq.input[0], sq
    return None


def _mean_of(g: OnnxGraph, t: str) -> tuple[str, int, Any] | None:
    rm = g.producer(t)
    if rm is None or rm.op_type != "ReduceMean":
        return None
    axis = _reduced_axis(g, rm)
    return None if axis is None else (rm.input[0], axis, rm)


def _fuse_norms(g: OnnxGraph) -> None:
    """``d / sqrt(mean(d*d) + eps)`` (d = x - mean(x), or x) [* gamma] [+ beta] -> one node."""
    for sqrt in g.of_type("Sqrt"):
        if not g.single_use(sqrt.output[0]):
            continue
        nodes: list[Any] = [sqrt]
        src, eps = sqrt.input[0], 0.0
        add = g.producer(src)
        if add is not None and add.op_type == "Add" and g.single_use(src):
            for i in (0, 1):
                c = g.scalar(add.input[i])
                if c is not None:
                    eps, src = c, add.input[1 - i]
                    nodes.append(add)
                    break
        found = _mean_of(g, src) if g.single_use(src) else None
        if found is None:
            continue
        sq_t, axis, rm2 = found
        sq = _square_of(g, sq_t)
        if sq is None:
            continue
        d, sq_node = sq
        nodes += [rm2, sq_node]
        # d / sqrt  or  d * (1 / sqrt)
        user = g.consumers(sqrt.output[0])[0]
        if user.op_type == "Div" and user.input[1] == sqrt.output[0] and user.input[0] == d:
            z_node = user
        elif user.op_type == "Reciprocal" and g.single_use(user.output[0]):
            z_node = g.consumers(user.output[0])[0]
            if z_node.op_type != "Mul" or d not in z_node.input:
                continue
            nodes.append(user)
        else:
            continue
        nodes.append(z_node)
        # d = x - mean(x): layernorm; d used by the square and the division only
        op_type, x = "RMSNormalization", d
        sub = g.producer(d)
        users = {id(u) for u in g.consumers(d)}  # Mul(d, d) lists d twice
        if sub is not None and sub.op_type == "Sub" and len(users) == 2 and d not in g.outputs:
            m = _mean_of(g, sub.input[1])
            centred = m is not None and m[0] == sub.input[0] and m[1] == axis
            if m is not None and centred and len(g.consumers(sub.input[1])) == 1:
                op_type, x = "LayerNormalization", sub.input[0]
                nodes += [sub, m[2]]
        out, scale, bias = z_node.output[0], None, None
        mul = g.only_consumer(out, "Mul")
        if mul is not None:
            c = mul.input[1] if mul.input[0] == out else mul.input[0]
            if c in g.consts:
                scale, out = c, mul.output[0]
                nodes.append(mul)
        addb = g.only_consumer(out, "Add")
        if addb is not None:
            c = addb.input[1] if addb.input[0] == out else addb.input[0]
            if c in g.consts:
                bias, out = c, addb.output[0]
                nodes.append(addb)
        ins = [x, scale or "", bias or ""]
        while ins and not ins[-1]:
            ins.pop()
        g.replace(nodes, op_type, ins, out, axis=axis, epsilon=eps)


def _op(name: str, roles: tuple[str, ...], doc: str, onnx_type: str, rewrite=None) -> Op:
    return Op(
        name=name,
        roles=roles,
        param_roles=("table", "weight", "bias"),
        infer_shape=_shape,
        run_float=_float,
        run_fixed=_fixed,
        auto_precision=_auto,
        trained_precision=_trained,
        trained_default=True,
        quantize_params=_qparams,
        cost=_cost,
        onnx_import={onnx_type: _import},
        onnx_rewrite=rewrite,
        onnx_export=_export,
        doc=doc,
    )


_COMMON = ("var", "table", "inv", "norm", "weight", "bias", "result")
LAYERNORM = _op(
    "layernorm",
    ("accum", *_COMMON),
    "(x - mean) / sqrt(var + eps) * gamma + beta over the last axis; mean and variance "
    "by exact sums and a 1/N constant, inverse square root by a normalized table",
    "LayerNormalization",
    rewrite=_fuse_norms,
)
RMSNORM = _op(
    "rmsnorm",
    _COMMON,
    "x / sqrt(mean(x**2) + eps) * gamma over the last axis; inverse square root by a "
    "normalized table (see layernorm)",
    "RMSNormalization",
)
