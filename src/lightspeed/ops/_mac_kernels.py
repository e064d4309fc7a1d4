"""numba kernels behind :mod:`lightspeed.ops._mac_jit` (imported only when numba is present).

Integer semantics match :func:`lightspeed.fixed._quantize_shift` and
:func:`lightspeed.fixed.overflow`; ``s`` is the right shift from the product
scale to the accumulator scale (negative: exact left shift). ``sat`` selects
the accumulation: -1 plain sums in the carrier dtype (wrapping; the caller
proved that harmless), 0 per-step clamp to [lo, hi] (SAT; SAT_SYM with
lo = -hi), 1 per-step SAT_ZERO. A zero input is skipped: its product is 0 in
every mode and adding 0 changes no accumulator.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(inline="always")
def _quant(p, s, mode):
    """Quantize integer p by 2**s (s >= 1) with mode id (see fixed.QUANT_MODES order)."""
    fl = p >> s
    if mode == 0:  # TRN
        return fl
    rem = p - (fl << s)
    half = (rem - rem + 1) << (s - 1)
    qb = rem >= half
    r = (rem & (half - 1)) != 0
    neg = p < 0
    if mode == 2:  # RND
        inc = qb
    elif mode == 1:  # TRN_ZERO
        inc = neg and rem != 0
    elif mode == 3:  # RND_ZERO
        inc = qb and (neg or r)
    elif mode == 4:  # RND_INF
        inc = qb and ((not neg) or r)
    elif mode == 5:  # RND_MIN_INF
        inc = qb and r
    else:  # RND_CONV
        inc = qb and (r or (fl & 1) == 1)
    return fl + inc


@nb.njit(inline="always")
def _accumulate(acc, xi, wi, s, mode, sat, lo, hi):
    """acc[j] (+)= quant(xi * wi[j]) for every j, with the accumulation rule ``sat``."""
    t = acc.dtype.type
    n = acc.shape[0]
    ts = t(s)
    if sat < 0:
        if s <= 0:
            for j in range(n):
                acc[j] += t(t(xi * wi[j]) << t(-s))
        elif mode == 0:
            for j in range(n):
                acc[j] += t(t(xi * wi[j]) >> ts)
        elif mode == 2:
            half = t(1) << t(s - 1)
            for j in range(n):
                acc[j] += t(t(t(xi * wi[j]) + half) >> ts)
        else:
            for j in range(n):
                acc[j] += t(_quant(t(xi * wi[j]), ts, mode))
        return
    tlo, thi = t(lo), t(hi)
    for j in range(n):
        p = t(xi * wi[j])
        if s > 0:
            p = t(_quant(p, ts, mode))
        elif s < 0:
            p = t(p << t(-s))
        if sat == 0:
            p = min(max(p, tlo), thi)
            acc[j] = min(max(t(acc[j] + p), tlo), thi)
        else:
            if p < tlo or p > thi:
                p = t(0)
            a = t(acc[j] + p)
            if a < tlo or a > thi:
                a = t(0)
            acc[j] = a


@nb.njit(inline="always")
def _wrapped(v, lo, mask, wrap):
    """Final wrap: 0 none, 1 signed ``((v - lo) & mask) + lo``, 2 unsigned ``v & mask``."""
    v = np.int64(v)
    if wrap == 1:
        return ((v - lo) & mask) + lo
    if wrap == 2:
        return v & mask
    return v


@nb.njit(cache=True, nogil=True)
def mac_rows(x, w, s, mode, acc0, sat, lo, hi, wrap_lo, wrap_mask, wrap, out):
    """Dense: out[b, j] = acc0[j] (+) quant(x[b, i] * w[i, j]) over i in order."""
    n_b, n_in = x.shape
    n_out = w.shape[1]
    acc = np.empty(n_out, dtype=w.dtype)
    t = w.dtype.type
    for b in range(n_b):
        acc[:] = acc0
        for i in range(n_in):
            xi = t(x[b, i])
            if xi != 0:
                _accumulate(acc, xi, w[i], s, mode, sat, lo, hi)
        for j in range(n_out):
            out[b, j] = _wrapped(acc[j], wrap_lo, wrap_mask, wrap)


@nb.njit(cache=True, nogil=True)
def conv2d(x, w, s, mode, acc0, geom, sat, lo, hi, wrap_lo, wrap_mask, wrap, out):
    """Direct 2D convolution (no im2col), patches in (kh, kw, channel) order.

    x (B, C, H, W); w (KH, KW, C, M); out (B, M, OH, OW); geom = (stride_h,
    stride_w, pad_top, pad_left, dil_h, dil_w). Padded positions are zeros: skipped.
    """
    n_b, n_c, h, wd = x.shape
    kh_n, kw_n, _, m = w.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    sh, sw, pt, pl, dh, dw = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    acc = np.empty(m, dtype=w.dtype)
    t = w.dtype.type
    for b in range(n_b):
        for oh in range(oh_n):
            for ow in range(ow_n):
                acc[:] = acc0
                for kh in range(kh_n):
                    ih = oh * sh - pt + kh * dh
                    if ih < 0 or ih >= h:
                        continue
                    for kw in range(kw_n):
                        iw = ow * sw - pl + kw * dw
                        if iw < 0 or iw >= wd:
                            continue
                        for c in range(n_c):
                            xi = t(x[b, c, ih, iw])
                            if xi != 0:
                                _accumulate(acc, xi, w[kh, kw, c], s, mode, sat, lo, hi)
                for j in range(m):
                    out[b, j, oh, ow] = _wrapped(acc[j], wrap_lo, wrap_mask, wrap)


# batch-innermost variants: the loop over samples is the long, contiguous vector loop
# (the per-element operation is the same; a product commutes)


@nb.njit(cache=True, nogil=True)
def mac_cols(xt, w, s, mode, acc0, sat, lo, hi, wrap_lo, wrap_mask, wrap, out):
    """Dense, batch last: xt (N, B) in w's dtype; out (B, M) int64 (strided stores)."""
    n_in, n_b = xt.shape
    n_out = w.shape[1]
    acc = np.empty(n_b, dtype=w.dtype)
    for j in range(n_out):
        acc[:] = acc0[j]
        for i in range(n_in):
            wv = w[i, j]
            if wv != 0:
                _accumulate(acc, wv, xt[i], s, mode, sat, lo, hi)
        for b in range(n_b):
            out[b, j] = _wrapped(acc[b], wrap_lo, wrap_mask, wrap)


@nb.njit(cache=True, nogil=True)
def conv2d_cols(xt, w, s, mode, acc0, geom, sat, lo, hi, wrap_lo, wrap_mask, wrap, out):
    """2D convolution, batch last: xt (C, H, W, B) in w's dtype, w (KH, KW, C, M),
    out (B, M, OH, OW) int64 (strided stores beat a separate transpose); patches in
    (kh, kw, channel) order."""
    n_c, h, wd, n_b = xt.shape
    kh_n, kw_n, _, m = w.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    sh, sw, pt, pl, dh, dw = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    acc = np.empty(n_b, dtype=w.dtype)
    for j in range(m):
        for oh in range(oh_n):
            for ow in range(ow_n):
                acc[:] = acc0[j]
                for kh in range(kh_n):
                    ih = oh * sh - pt + kh * dh
                    if ih < 0 or ih >= h:
                        continue
                    for kw in range(kw_n):
                        iw = ow * sw - pl + kw * dw
                        if iw < 0 or iw >= wd:
                            continue
                        for c in range(n_c):
                            wv = w[kh, kw, c, j]
                            if wv != 0:
                                _accumulate(acc, wv, xt[c, ih, iw], s, mode, sat, lo, hi)
                for b in range(n_b):
                    out[b, j, oh, ow] = _wrapped(acc[b], wrap_lo, wrap_mask, wrap)


@nb.njit(cache=True, nogil=True)
def transpose2d(src, dst):
    """dst[k, b] = src[b, k] (with dtype conversion), in tiles; contiguous writes inner."""
    n_b, n_k = src.shape
    tile = 64
    for k0 in range(0, n_k, tile):
        k1 = min(k0 + tile, n_k)
        for b0 in range(0, n_b, tile):
            b1 = min(b0 + tile, n_b)
            for k in range(k0, k1):
                for b in range(b0, b1):
                    dst[k, b] = src[b, k]


@nb.njit(cache=True, nogil=True)
def dense_cast(x, w, acc0, shift, mode, ovf, lo, hi, wrap_lo, mask):  # pragma: no cover
    """(result_t) of an exact int64 dense MAC, in one pass (small batches).

    The caller proved every partial sum exact in int64 and inside the accumulator (no
    wrap), so the sum is plain. Then the result cast: quantize by 2**shift with
    ``mode`` (shift < 0: exact left shift), and the result's overflow ``ovf``: 0 clamp
    to [lo, hi] (SAT; SAT_SYM with lo = -hi), 1 SAT_ZERO, 2 signed wrap, 3 unsigned wrap.
    """
    b, n = x.shape
    m = w.shape[1]
    out = np.empty((b, m), np.int64)
    row = np.empty(m, np.int64)
    for i in range(b):
        for j in range(m):
            row[j] = acc0[j]
        for k in range(n):
            xv = x[i, k]
            if xv != 0:
                for j in range(m):
                    row[j] += xv * w[k, j]
        for j in range(m):
            q = row[j]
            if shift > 0:
                q = _quant(q, shift, mode)
            elif shift < 0:
                q = q << -shift
            if q < lo or q > hi:
                if ovf == 0:
                    q = lo if q < lo else hi
                elif ovf == 1:
                    q = 0
                elif ovf == 2:
                    q = ((q - wrap_lo) & mask) + wrap_lo
                else:
                    q = q & mask
            out[i, j] = q
    return out
