"""Optional numba kernels for :mod:`lightspeed.ops.mac` (same bits, fewer passes).

The NumPy code in :mod:`lightspeed.ops.mac` is the reference; these kernels fuse
"product -> quantize to accum_t -> (saturate) -> add" into one loop over
samples, convolve directly without im2col copies, skip zero inputs (a zero
product adds nothing in every mode) and run in int32 where every intermediate
provably fits. Tests compare them bit for bit with the reference and with
Xilinx's headers. numba is optional: without it (or with ``LIGHTSPEED_NO_JIT=1``)
the NumPy path runs. Kernels are cached on disk (``cache=True``) so only the
very first run on a machine pays the JIT compile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lightspeed._jit import is_loaded, kernel_module
from lightspeed.fixed import QUANT_MODES, FixedType

BATCH_LAST_MIN = 64  # samples from which the batch-innermost kernels win
ROWS_MIN_OUT = 64  # dense layers this wide vectorise well over outputs (and skip zero inputs)
MODE_ID = {m: i for i, m in enumerate(QUANT_MODES)}  # TRN=0, TRN_ZERO=1, RND=2, ...


def kernels() -> Any | None:
    """The compiled kernel module, or None when numba is unavailable or disabled."""
    return kernel_module("lightspeed.ops._mac_kernels")


def loaded() -> bool:
    """True once the kernels were imported in this process (no start-up cost left)."""
    return is_loaded("lightspeed.ops._mac_kernels")


@dataclass(frozen=True)
class Plan:
    """How a kernel runs one MAC: carrier dtype and accumulation rule (see _mac_kernels)."""

    dtype: Any  # np.int32 or np.int64: products and sums live in it
    s: int
    mode: int
    sat: int = -1  # -1 plain (wrapping) sums, 0 clamp, 1 SAT_ZERO
    lo: int = 0
    hi: int = 0
    wrap: int = 0  # final wrap: 0 none, 1 signed, 2 unsigned
    wrap_lo: int = 0
    wrap_mask: int = 0

    def args(self, acc0: np.ndarray) -> tuple:
        return (self.s, self.mode, acc0.astype(self.dtype), self.sat, self.lo, self.hi)

    def tail(self) -> tuple:
        return (self.wrap_lo, self.wrap_mask, self.wrap)


def plan(
    x_max: int, w_max: int, s: int, acc_t: FixedType, single: bool, col_bound: int
) -> Plan | None:
    """A carrier in which the kernel provably reproduces the reference, or None."""
    prod_bits = x_max.bit_length() + w_max.bit_length() + max(-s, 0)
    mode = MODE_ID[acc_t.rounding]
    if single:
        wrap_t = acc_t if acc_t.overflow == "WRAP" else None  # else nothing can overflow
        # (carrier, bits for exact products, widest wrap whose result stays an int64 carrier)
        for dtype, bits, max_wrap in ((np.int32, 31, 32), (np.int64, 62, 62)):
            if prod_bits > bits:
                continue
            exact = col_bound < 2**bits  # no partial sum leaves the carrier
            if exact or (wrap_t is not None and acc_t.width <= max_wrap):
                if wrap_t is None:
                    return Plan(dtype, s, mode)
                if acc_t.width > 62:
                    return None  # results could leave the int64 carrier: NumPy path
                return Plan(
                    dtype,
                    s,
                    mode,
                    wrap=1 if acc_t.signed else 2,
                    wrap_lo=acc_t.min_int,
                    wrap_mask=(1 << acc_t.width) - 1,
                )
        return None
    lo, hi = acc_t.min_int, acc_t.max_int
    if acc_t.overflow == "SAT_SYM" and acc_t.signed and acc_t.width > 1:
        lo = -hi
    sat = 1 if acc_t.overflow == "SAT_ZERO" else 0
    for dtype, bits in ((np.int32, 31), (np.int64, 62)):
        if prod_bits <= bits and 2 * max(abs(lo), abs(hi)) < 2**bits:
            return Plan(dtype, s, mode, sat, lo, hi)
    return None


def _batch_last(k: Any, x: np.ndarray, dtype) -> np.ndarray:
    """(B, ...) -> contiguous (prod(...), B) in dtype, by a tiled transpose."""
    src = np.ascontiguousarray(x).reshape(x.shape[0], -1)
    dst = np.empty((src.shape[1], src.shape[0]), dtype=dtype)
    k.transpose2d(src, dst)
    return dst


def dense(x: np.ndarray, w: np.ndarray, acc0: np.ndarray, p: Plan) -> np.ndarray | None:
    """(B, N) x (N, M) -> int64 accumulators (B, M), or None without numba."""
    k = kernels()
    if k is None:
        return None
    wd = np.ascontiguousarray(w, dtype=p.dtype)
    if x.shape[0] >= BATCH_LAST_MIN and w.shape[1] < ROWS_MIN_OUT:
        # narrow layers: long contiguous vectors over samples
        out = np.empty((x.shape[0], w.shape[1]), dtype=np.int64)
        k.mac_cols(_batch_last(k, x, p.dtype), wd, *p.args(acc0), *p.tail(), out)
        return out
    # wide layers: vectors over outputs, and zero inputs (after ReLU) are skipped
    out = np.empty((x.shape[0], w.shape[1]), dtype=np.int64)
    k.mac_rows(np.ascontiguousarray(x), wd, *p.args(acc0), *p.tail(), out)
    return out


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    acc0: np.ndarray,
    p: Plan,
    geom: tuple[int, ...],
    out_hw: tuple[int, int],
) -> np.ndarray | None:
    """x (B, C, H, W), w (KH, KW, C, M) -> int64 accumulators (B, M, OH, OW), or None."""
    k = kernels()
    if k is None:
        return None
    wd = np.ascontiguousarray(w, dtype=p.dtype)
    s, mode, a0, sat, lo, hi = p.args(acc0)
    g = np.asarray(geom, dtype=np.int64)
    if x.shape[0] >= BATCH_LAST_MIN:
        xt = _batch_last(k, x, p.dtype).reshape(*x.shape[1:], x.shape[0])
        out = np.empty((x.shape[0], w.shape[3], *out_hw), dtype=np.int64)
        k.conv2d_cols(xt, wd, s, mode, a0, g, sat, lo, hi, *p.tail(), out)
        return out
    out = np.empty((x.shape[0], w.shape[3], *out_hw), dtype=np.int64)
    k.conv2d(np.ascontiguousarray(x), wd, s, mode, a0, g, sat, lo, hi, *p.tail(), out)
    return out
