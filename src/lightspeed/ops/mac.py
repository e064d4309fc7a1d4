"""Multiply-accumulate with hls4ml io_parallel (latency) semantics.

For inputs ``x`` (type ``x_t``), weights ``w`` (``w_t``) and bias ``b`` (``b_t``)::

    acc = (accum_t) b
    for i in inputs:                       # in input-index order
        acc = (accum_t)(acc + (accum_t)(x[i] * w[i]))
    result = (result_t) acc

Every cast applies the target's quantization and overflow modes. The fast
paths below are only taken where they provably give the same bits:

* products land exactly on the accumulator scale and the accumulator wraps
  (or the worst-case partial sum cannot overflow): one exact integer matrix
  product, through float64 BLAS when every partial sum is below 2**53;
* products need rounding: element-wise products (float64 when exact), then
  the same summation rule;
* a saturating accumulator that might overflow: the sequential loop above.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from lightspeed.fixed import FixedType, _quantize_shift, as_exact, overflow, requantize

_EXACT_FLOAT = 2**52  # float64 holds integers (and x + 0.5 steps) exactly below this
_SAFE_INT_BITS = 62  # int64 holds every value below 2**62 (fixed.py's carrier rule)
_CHUNK_ELEMS = 1 << 21  # elements per block of element-wise products (memory bound)
# multiply-accumulates per call (or per predict, see emulate) below which NumPy beats the
# one-off numba start-up (~0.5 s); once the kernels are loaded every MAC uses them
JIT_MIN_WORK = 1 << 25


def mac(
    x: np.ndarray,
    x_t: FixedType,
    w: np.ndarray,
    w_t: FixedType,
    b: np.ndarray | None,
    b_t: FixedType | None,
    acc_t: FixedType,
) -> np.ndarray:
    """``x`` (B, N) integers, ``w`` (N, M) integers, ``b`` (M,) -> accumulator integers (B, M)."""
    prep = _prepare_cached(x_t, w, w_t, b, b_t, acc_t)
    acc0, w, s, x_max, col_bound, single = prep[:6]
    p = _jit_plan(x.dtype, x.size * w.shape[1], x_max, w, s, acc0, acc_t, single, col_bound)
    if p is not None:
        from lightspeed.ops import _mac_jit

        out = _mac_jit.dense(x, w, acc0, p)
        if out is not None:
            return out
    if s > 0:
        return _mac_elementwise(x, w, s, acc0, acc_t, single)
    w_scaled = prep.w_acc
    assert w_scaled is not None  # s <= 0 here
    if single:
        if s == 0 and prep.w_float is not None and x.dtype != object:
            acc = (x.astype(np.float64) @ prep.w_float).astype(np.int64)  # exact: see _prepare
        else:
            acc = _exact_matmul(x, w_scaled, x_max)
        if acc.dtype == object or acc0.dtype == object:
            return overflow(acc + acc0, acc_t)
        acc += acc0  # in place: int64 + int64 exactly as before (both below 2**62)
        if col_bound <= min(abs(acc_t.min_int), acc_t.max_int):
            return acc  # no sum can leave the accumulator: nothing to wrap
        return overflow(acc, acc_t)
    return _sequential(x, w_scaled, acc0, acc_t)


SMALL_MACS = 1 << 16  # up to this many multiply-adds one fused loop beats BLAS + casts


def dense_cast(
    x: np.ndarray,
    x_t: FixedType,
    w: np.ndarray,
    w_t: FixedType,
    b: np.ndarray | None,
    b_t: FixedType | None,
    acc_t: FixedType,
    res_t: FixedType,
) -> np.ndarray | None:
    """``(res_t) mac(...)`` in one numba pass for small batches; None where it does not apply.

    Only where the accumulator provably never overflows and every sum is exact in
    int64 (then the MAC is a plain integer sum, the reference's bits), and only once
    the kernels are loaded (never worth a compile here)."""
    from lightspeed.ops import _mac_jit

    if x.dtype != np.int64 or x.ndim != 2 or not _mac_jit.loaded():
        return None
    if x.shape[0] * w.size > SMALL_MACS:
        return None
    prep = _prepare_cached(x_t, w, w_t, b, b_t, acc_t)
    if prep.s > 0 or prep.w.dtype != np.int64 or prep.acc0.dtype != np.int64:
        return None
    bound = prep.col_bound
    shift = acc_t.frac - res_t.frac
    if bound > min(abs(acc_t.min_int), acc_t.max_int) or (bound << max(-shift, 0)) >= 2**61:
        return None
    if res_t.width > _SAFE_INT_BITS or shift > _SAFE_INT_BITS:
        return None
    k = _mac_jit.kernels()
    if k is None:
        return None
    lo, hi = res_t.min_int, res_t.max_int
    ovf = {"SAT": 0, "SAT_SYM": 0, "SAT_ZERO": 1}.get(res_t.overflow, 2 if res_t.signed else 3)
    if res_t.overflow == "SAT_SYM" and res_t.signed and res_t.width > 1:
        lo = -hi
    mode = _mac_jit.MODE_ID[res_t.rounding]
    mask = (1 << res_t.width) - 1
    return k.dense_cast(x, prep.w_acc, prep.acc0, shift, mode, ovf, lo, hi, res_t.min_int, mask)


def conv_mac(
    x: np.ndarray,
    x_t: FixedType,
    w: np.ndarray,
    w_t: FixedType,
    b: np.ndarray | None,
    b_t: FixedType | None,
    acc_t: FixedType,
    strides: list[int],
    pads: list[int],
    dilations: list[int],
) -> np.ndarray | None:
    """Direct (no im2col) 1D/2D convolution through the numba kernel, where it applies.

    ``x`` (B, C, *S) integers, ``w`` (C_out, C, *k) integers (one group) -> accumulator
    integers (B, C_out, *O); None when the kernel does not apply (the caller then runs
    im2col + :func:`mac`). Patches are summed in (kernel..., channel) order.
    """
    nd = w.ndim - 2
    if nd not in (1, 2) or x.dtype == object:
        return None
    if nd == 1:  # a 1D conv is a 2D conv of height 1
        out = conv_mac(
            x[:, :, None, :],
            x_t,
            w[:, :, None, :],
            w_t,
            b,
            b_t,
            acc_t,
            [1, *strides],
            [0, pads[0], 0, pads[1]],
            [1, *dilations],
        )
        return None if out is None else out[:, :, 0, :]
    c_out, c_in, kh, kw = w.shape
    w4 = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (KH, KW, C, M): rows in (kh, kw, c) order
    acc0, wm, s, x_max, col_bound, single, _, _ = _prepare(
        x_t, w4.reshape(-1, c_out), w_t, b, b_t, acc_t
    )
    out_hw = tuple(
        (x.shape[2 + i] + pads[i] + pads[i + 2] - dilations[i] * (k - 1) - 1) // strides[i] + 1
        for i, k in enumerate((kh, kw))
    )
    work = x.shape[0] * out_hw[0] * out_hw[1] * wm.size
    # exact products too: a direct convolution beats im2col + BLAS
    p = _jit_plan(x.dtype, work, x_max, wm, s, acc0, acc_t, single, col_bound, blas=False)
    if p is None:
        return None
    from lightspeed.ops import _mac_jit

    geom = (strides[0], strides[1], pads[0], pads[1], dilations[0], dilations[1])
    return _mac_jit.conv2d(x, wm.reshape(kh, kw, c_in, c_out), acc0, p, geom, out_hw)


class Prepared(NamedTuple):
    acc0: np.ndarray
    w: np.ndarray
    s: int
    x_max: int
    col_bound: int
    single: bool
    w_float: np.ndarray | None  # float64 weights when x @ w is exact in float64 BLAS
    w_acc: np.ndarray | None  # s <= 0: the weights on the accumulator's scale (w << -s)


# Weight-derived set-up, memoised per (read-only weight array, types): a small model at
# batch 1 otherwise spends most of its time re-deriving it. Only arrays that own their
# data and are read-only are cached (QuantizedModel freezes its parameters), and a weak
# reference proves the cached entry is for the same live array, so a result can never
# belong to changed weights. A bounded cache of pure results, not state.
_PREPARED: dict[tuple, tuple] = {}
_PREPARED_MAX = 512


def _frozen(a) -> bool:
    return isinstance(a, np.ndarray) and not a.flags.writeable and a.flags.owndata


def _prepare_cached(x_t, w, w_t, b, b_t, acc_t) -> Prepared:
    if not (_frozen(w) and (b is None or _frozen(b))):
        return _prepare(x_t, w, w_t, b, b_t, acc_t)
    # identities, not values: hashing four dataclasses per call costs more than the rest;
    # the entry holds the type objects, so their ids cannot be reused while it lives
    key = (id(x_t), id(w), id(w_t), id(b), id(b_t), id(acc_t))
    hit = _PREPARED.get(key)
    if hit is not None and hit[0]() is w and (b is None or hit[1]() is b):
        return hit[2]
    prep = _prepare(x_t, w, w_t, b, b_t, acc_t)
    for a in (prep.acc0, prep.w, prep.w_float, prep.w_acc):
        if a is not None and a.flags.owndata:
            a.setflags(write=False)  # shared by every later call
    if len(_PREPARED) >= _PREPARED_MAX:
        _PREPARED.clear()
    refs = (weakref.ref(w), weakref.ref(b) if b is not None else None)
    _PREPARED[key] = (*refs, prep, (x_t, w_t, b_t, acc_t))
    return prep


def _prepare(x_t: FixedType, w: np.ndarray, w_t: FixedType, b, b_t, acc_t: FixedType):
    """What every MAC path needs to know (see :class:`Prepared`)."""
    n_out = w.shape[1]
    if b is None or b_t is None:
        acc0 = np.zeros(n_out, dtype=np.int64)
    else:
        acc0 = requantize(b, b_t.frac, acc_t)
    s = x_t.frac + w_t.frac - acc_t.frac
    w = as_exact(w)
    if s > 0 and w.dtype != object and np.all((w & ((1 << s) - 1)) == 0):
        w, s = w >> s, 0  # weights with trailing zeros: products are exact after all
    x_max = max(abs(x_t.min_int), abs(x_t.max_int))
    col_bound = _column_bound(x_max, w, s, acc0)
    wraps = acc_t.overflow == "WRAP"
    no_overflow = col_bound <= min(abs(acc_t.min_int), acc_t.max_int)
    single = wraps or no_overflow  # one overflow step at the end gives the same bits
    w_float = None
    if s == 0 and w.dtype != object and w.size:
        w_sum = int(np.abs(w).sum(axis=0).max())
        if x_max * w_sum < _EXACT_FLOAT:
            w_float = w.astype(np.float64)
    w_acc = (w << (-s) if s < 0 else w) if s <= 0 else None
    return Prepared(acc0, w, s, x_max, col_bound, single, w_float, w_acc)


def _jit_plan(
    x_dtype,
    work: int,
    x_max: int,
    w: np.ndarray,
    s: int,
    acc0: np.ndarray,
    acc_t: FixedType,
    single: bool,
    col_bound: int,
    blas: bool = True,
):
    """A numba kernel plan where it gives the reference's bits; None to use NumPy.

    Skipped for small work before numba is loaded (its start-up would dominate), for
    exact products with one final overflow when ``blas`` (a float64 BLAS matrix product
    is faster) and where int64 cannot hold every intermediate.
    """
    if s <= 0 and single and blas:
        return None  # the float64 BLAS product below is faster
    if np.dtype(x_dtype).kind == "O" or w.dtype.kind == "O" or acc0.dtype.kind == "O":
        return None
    from lightspeed.ops import _mac_jit

    if work < JIT_MIN_WORK and not _mac_jit.loaded():
        return None
    w_max = int(np.max(np.abs(w))) if w.size else 0
    return _mac_jit.plan(x_max, w_max, s, acc_t, single, col_bound)


def _column_bound(x_max: int, w: np.ndarray, s: int, acc0: np.ndarray) -> int:
    """Worst-case |partial sum| over all inputs of the input type, per output, maximised."""
    if w.size == 0:
        return int(np.max(np.abs(acc0))) if acc0.size else 0
    w_abs = as_exact(np.abs(w), x_max.bit_length() + max(-s, 0))
    # each quantized product is at most one step above the truncated value
    terms = ((x_max * w_abs) >> s) + 1 if s > 0 else (x_max * w_abs) << (-s)
    return int(np.max(np.abs(acc0) + terms.sum(axis=0)))


def _exact_matmul(x: np.ndarray, w: np.ndarray, x_max: int) -> np.ndarray:
    """Exact integer x @ w (float64 BLAS when every partial sum is provably < 2**52)."""
    w_sum = int(np.abs(w).sum(axis=0).max()) if w.size else 0
    if x.dtype != object and w.dtype != object and x_max * w_sum < _EXACT_FLOAT:
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    if x.dtype != object and w.dtype != object and x_max * w_sum < 2**62:
        return x.astype(np.int64) @ w.astype(np.int64)
    return as_exact(x.astype(object)) @ w.astype(object)


def _quantized_products(xc: np.ndarray, w: np.ndarray, s: int, mode: str) -> np.ndarray:
    """(B, N, M) products x_i*w_ij quantized by 2**s with ``mode`` (s may be <= 0)."""
    if s <= 0:
        return as_exact(xc)[:, :, None] * (w << (-s))[None, :, :]
    p_max = int(np.max(np.abs(xc))) * int(np.max(np.abs(w))) if xc.size and w.size else 0
    if mode in ("TRN", "RND") and p_max < _EXACT_FLOAT and xc.dtype != object:
        p = xc.astype(np.float64)[:, :, None] * (w.astype(np.float64) * 2.0**-s)[None, :, :]
        if mode == "RND":
            p += 0.5
        np.floor(p, out=p)
        return p.astype(np.int64)
    prod = as_exact(xc, int(np.max(np.abs(w))).bit_length())[:, :, None] * w[None, :, :]
    return _quantize_shift(prod, s, mode)


def _mac_elementwise(
    x: np.ndarray, w: np.ndarray, s: int, acc0: np.ndarray, acc_t: FixedType, single_overflow: bool
) -> np.ndarray:
    n_in, n_out = w.shape
    rows = max(1, _CHUNK_ELEMS // max(1, n_in * n_out))
    out = []
    for start in range(0, x.shape[0], rows):
        xc = x[start : start + rows]
        p = _quantized_products(xc, w, s, acc_t.rounding)
        if single_overflow:
            # wrapping is a ring map: wrap(sum(wrap(p))) == wrap(sum(p)); or nothing overflows
            out.append(overflow(p.sum(axis=1) + acc0, acc_t))
        else:
            p = overflow(p, acc_t)  # each product saturates on its own first
            out.append(_sequential_products(p, acc0, acc_t))
    if not out:
        return np.zeros((0, n_out), dtype=np.int64)
    return np.concatenate(out, axis=0)


def _sequential_products(p: np.ndarray, acc0: np.ndarray, acc_t: FixedType) -> np.ndarray:
    acc = np.broadcast_to(acc0, (p.shape[0], p.shape[2])).copy()
    for i in range(p.shape[1]):
        acc = overflow(acc + p[:, i, :], acc_t)
    return acc


def _sequential(x: np.ndarray, w: np.ndarray, acc0: np.ndarray, acc_t: FixedType) -> np.ndarray:
    """Saturating accumulation in input order; products are exact at the accumulator scale."""
    x = as_exact(x, int(np.max(np.abs(w))).bit_length() if w.size else 0)
    acc = np.broadcast_to(acc0, (x.shape[0], w.shape[1])).copy()
    for i in range(w.shape[0]):
        p = overflow(x[:, i : i + 1] * w[i][None, :], acc_t)
        acc = overflow(acc + p, acc_t)
    return acc


# ---------------------------------------------------------------------------
# typing shared by every multiply-accumulate op (dense, conv, batchnorm)


def linear_precision(
    w: np.ndarray, b: np.ndarray | None, x_t: FixedType, ctx_fixed: dict, opts, out_range
) -> dict[str, FixedType]:
    """Auto types for a MAC op: weights/bias from their values, an exact accumulator
    from interval analysis over the whole input type, a result from calibration.

    ``w`` is the float weight matrix as (fan_in, n_out); ``b`` the float bias or None.
    """
    from lightspeed.fixed import quantize_float
    from lightspeed.ops.base import exact_type, param_type, result_type

    prec = dict(ctx_fixed)
    prec.setdefault("weight", param_type(w, opts.weight_bits))
    if b is not None:
        prec.setdefault("bias", param_type(b, opts.weight_bits))
    if "accum" not in prec:
        wq = quantize_float(w, prec["weight"], what="weights")
        prod_frac = x_t.frac + prec["weight"].frac
        frac = max(prod_frac, prec["bias"].frac) if b is not None else prod_frac
        lo, hi = _interval(wq, x_t, prod_frac, frac)
        if b is not None:
            bq = as_exact(quantize_float(b, prec["bias"], what="bias"), frac)
            bq = bq << (frac - prec["bias"].frac)
            lo, hi = lo + bq, hi + bq
        lo_i = int(np.min(lo)) if np.size(lo) else 0
        hi_i = int(np.max(hi)) if np.size(hi) else 0
        prec["accum"] = exact_type(min(lo_i, 0), max(hi_i, 0), frac)
    if "result" not in prec:
        prec["result"] = result_type(out_range[0], out_range[1], opts)
    return prec


def _interval(wq: np.ndarray, x_t: FixedType, prod_frac: int, frac: int):
    """Per-output [lo, hi] of sum_i w_i*x_i over x in x_t's range, at scale ``frac``."""
    shift = frac - prod_frac
    w = as_exact(wq, max(abs(x_t.min_int), abs(x_t.max_int)).bit_length() + shift)
    a, c = w * x_t.min_int, w * x_t.max_int
    lo = np.minimum(a, c).sum(axis=0) << shift
    hi = np.maximum(a, c).sum(axis=0) << shift
    return lo, hi


def trained_mac_precision(
    name: str, w: np.ndarray, b: np.ndarray | None, x_t: FixedType, trained: dict[str, FixedType]
) -> dict[str, FixedType]:
    """Trained typing of a multiply-accumulate: weight/bias/result as trained, an exact accumulator.

    ``w`` is the (fan_in, fan_out) matrix, ``b`` the bias; without a trained
    result the result is the exact accumulator itself (nothing rounded).
    """
    from lightspeed.errors import ConfigError
    from lightspeed.ops.base import AutoOptions

    missing = [
        r for r in ("weight", "bias") if r not in trained and (r == "weight" or b is not None)
    ]
    if missing:
        raise ConfigError(
            f"node {name!r}: no trained type for its {' and '.join(missing)}: it was not "
            f"quantized in training; give it in the config (layers: {{{name}: {{{missing[0]}: "
            "'ap_fixed<16,6>'}}), quantize it in training, or use --precision auto"
        )
    fixed = dict(trained)
    fixed.setdefault("result", FixedType(1, 1))
    prec = linear_precision(w, b, x_t, fixed, AutoOptions(), (0.0, 0.0))
    if "result" not in trained:
        prec["result"] = prec["accum"]
    return prec
