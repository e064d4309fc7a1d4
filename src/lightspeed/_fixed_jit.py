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

MIN_ELEMS = 1 << 23  # values per call from which loading numba (~0.3 s) pays off on its own
_MAX_SCALE_BITS = 1000  # 2**frac must be a normal double (and y normal for normal x)


def kernels() -> Any | None:
    """The compiled kernel module, or None when numba is unavailable or disabled."""
    return kernel_module("lightspeed._fixed_kernels")


def loaded() -> bool:
    """True once the kernels were imported in this process (no start-up cost left)."""
    return is_loaded("lightspeed._fixed_kernels")


def quantize(x: np.ndarray, frac: int, args: tuple[int, ...]) -> np.ndarray | None:
    """int64 integers of float32/float64 ``x`` quantized at ``frac`` fractional bits, or None.

    ``args`` are the type's kernel arguments (:func:`lightspeed.fixed.kernel_args`);
    None means: use the NumPy path.
    """
    if abs(frac) > _MAX_SCALE_BITS or x.size == 0:
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
    if k.quantize(flat, float(np.ldexp(1.0, frac)), *args, out) != 0:
        return None
    return out.reshape(x.shape)
