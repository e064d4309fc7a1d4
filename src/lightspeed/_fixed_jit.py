"""Optional numba fast path for :func:`lightspeed.fixed.quantize_float` (same bits).

The NumPy code in :mod:`lightspeed.fixed` is the reference and handles every
value; the kernel fuses scaling, rounding and overflow into one pass for the
common case and hands anything special (NaN/Inf, |y| >= 2**62, values that
underflow, wraps wider than 62 bits) back to it. It runs only once the numba
kernels are loaded (by the emulator for large batches, or :func:`load`), or
for arrays large enough to pay the one-off start-up; ``LIGHTSPEED_NO_JIT=1``
turns it off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed._jit import is_loaded, kernel_module
from lightspeed.fixed import _SAFE_BITS, QUANT_MODES, FixedType

MIN_ELEMS = 1 << 23  # values per call from which loading numba (~0.3 s) pays off on its own
_MAX_SCALE_BITS = 1000  # 2**frac must be a normal double (and y normal for normal x)
_MODE_ID = {m: i for i, m in enumerate(QUANT_MODES)}
_INT64_MAX = (1 << 63) - 1


def kernels() -> Any | None:
    """The compiled kernel module, or None when numba is unavailable or disabled."""
    return kernel_module("lightspeed._fixed_kernels")


def loaded() -> bool:
    """True once the kernels were imported in this process (no start-up cost left)."""
    return is_loaded("lightspeed._fixed_kernels")


def _args(t: FixedType) -> tuple[int, int, int, int, int, int]:
    """(mode, ovf, lo, hi, wrap_lo, mask) for the kernel, mirroring fixed.overflow."""
    lo, hi = t.min_int, t.max_int
    if t.overflow == "SAT_SYM" and t.signed and t.width > 1:
        lo = -hi
    if t.overflow == "WRAP":
        ovf = 0 if t.width > _SAFE_BITS else (1 if t.signed else 2)
    else:
        ovf = 4 if t.overflow == "SAT_ZERO" else 3
    # kernel values stay below 2**62 + 1, so clipping the range to int64 changes nothing
    hi = min(hi, _INT64_MAX)
    mask = (1 << t.width) - 1 if ovf in (1, 2) else 0
    return _MODE_ID[t.rounding], ovf, lo, hi, t.min_int if ovf == 1 else 0, mask


def quantize(x: np.ndarray, t: FixedType) -> np.ndarray | None:
    """int64 integers of float32/float64 ``x`` quantized to t, or None (use the NumPy path)."""
    if abs(t.frac) > _MAX_SCALE_BITS or x.size == 0:
        return None
    if not loaded() and x.size < MIN_ELEMS:
        return None
    k = kernels()
    if k is None:
        return None
    flat = x.reshape(-1)
    if not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat)
    out = np.empty(flat.shape[0], dtype=np.int64)
    if k.quantize(flat, float(np.ldexp(1.0, t.frac)), *_args(t), out) != 0:
        return None
    return out.reshape(x.shape)
