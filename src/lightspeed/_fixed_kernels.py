"""numba kernel behind :mod:`lightspeed._fixed_jit` (imported only when numba is present).

One fused pass of :func:`lightspeed.fixed._quantize_finite` plus
:func:`lightspeed.fixed.overflow` for values that need nothing special; any
other value makes the kernel give up (return 1) so the caller runs the exact
NumPy path instead.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_HUGE = 2.0**62  # |y| from here on: Python-int path
_EXACT_HALF = 2.0**52  # below, fl + 0.5 is exact; above, y is an integer
_TINY = 2.0**-1022  # subnormal y may round differently from ldexp: exact path


@nb.njit(cache=True, nogil=True)
def quantize(x, scale, mode, ovf, lo, hi, wrap_lo, mask, out):
    """out[i] = overflow(quantize(x[i] * scale)); 0 when done, 1 to fall back.

    ``mode`` indexes fixed.QUANT_MODES; ``ovf`` 0 no wrap possible (width > 62: fall back
    on overflow), 1 signed wrap, 2 unsigned wrap, 3 SAT/SAT_SYM clamp, 4 SAT_ZERO.
    ``lo``/``hi`` is the (clipped to int64) valid range.
    """
    for i in range(x.shape[0]):
        xv = np.float64(x[i])
        ax = abs(xv)
        if not ax <= 1.7976931348623157e308:  # NaN or Inf: the caller raises
            return 1
        y = xv * scale  # exact (a power of two) while y stays normal
        ay = abs(y)
        if ay >= _HUGE or (ay < _TINY and xv != 0.0):
            return 1
        fl = np.floor(y)
        inc = False
        if mode != 0:
            half = fl + 0.5
            qb = y >= half and ay < _EXACT_HALF  # the first dropped bit
            r = y != fl and y != half  # any dropped bit below it
            neg = xv < 0.0
            if mode == 2:  # RND
                inc = qb
            elif mode == 1:  # TRN_ZERO
                inc = neg and (qb or r)  # type: ignore[assignment]
            elif mode == 3:  # RND_ZERO
                inc = qb and (neg or r)  # type: ignore[assignment]
            elif mode == 4:  # RND_INF
                inc = qb and ((not neg) or r)
            elif mode == 5:  # RND_MIN_INF
                inc = qb and r
            else:  # RND_CONV
                inc = qb and (r or (np.int64(fl) & 1) == 1)
        q = np.int64(fl) + np.int64(inc)
        if q < lo or q > hi:
            if ovf == 1:
                q = ((q - wrap_lo) & mask) + wrap_lo
            elif ovf == 2:
                q = q & mask
            elif ovf == 3:
                q = lo if q < lo else hi
            elif ovf == 4:
                q = 0  # type: ignore[assignment]
            else:
                return 1
        out[i] = q
    return 0
