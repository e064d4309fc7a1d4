"""The fused small-batch dense kernel (ops/mac.py ``dense_cast``) against the reference
``cast(mac(...))``, over rounding and overflow modes, shifts both ways and edge inputs."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from lightspeed.fixed import QUANT_MODES, FixedType, cast
from lightspeed.ops import _mac_jit
from lightspeed.ops import mac as M

pytestmark = pytest.mark.skipif(_mac_jit.kernels() is None, reason="numba is not installed")


def _frozen(a):
    a = np.array(a, dtype=np.int64)
    a.setflags(write=False)
    return a


@pytest.mark.parametrize(
    "rounding, overflow",
    list(itertools.product(QUANT_MODES, ("SAT", "SAT_SYM", "SAT_ZERO", "WRAP"))),
)
@pytest.mark.parametrize("signed", [True, False])
def test_fused_kernel_gives_the_reference_bits(rounding, overflow, signed):
    rng = np.random.default_rng(zlib.crc32(f"{rounding}{overflow}{signed}".encode()))
    x_t = FixedType(10, 4, signed)
    w_t = FixedType(8, 2)
    b_t = FixedType(8, 3)
    # right shifts 8 and 10 (rounding), none, and a left shift of 4
    for acc_frac, res_width, res_int in [(14, 9, 3), (14, 12, 8), (14, 16, 2), (14, 20, 2)]:
        acc_t = FixedType(40, 40 - acc_frac)  # wide: never overflows, so the kernel applies
        res_t = FixedType(res_width, res_int, signed, rounding, overflow)
        x = rng.integers(x_t.min_int, x_t.max_int + 1, size=(7, 12))
        x[0] = x_t.max_int  # extremes and zeros (skipped inputs) included
        x[1] = x_t.min_int
        x[2, ::2] = 0
        w = _frozen(rng.integers(w_t.min_int, w_t.max_int + 1, size=(12, 9)))
        b = _frozen(rng.integers(b_t.min_int, b_t.max_int + 1, size=9))
        got = M.dense_cast(x, x_t, w, w_t, b, b_t, acc_t, res_t)
        assert got is not None, (acc_t, res_t)
        ref = cast(M.mac(x, x_t, w, w_t, b, b_t, acc_t), acc_t, res_t)
        np.testing.assert_array_equal(got, ref, err_msg=f"{acc_t} -> {res_t}")


def test_not_taken_where_the_accumulator_could_overflow_or_the_batch_is_large():
    x_t, w_t = FixedType(10, 4), FixedType(8, 2)
    w = _frozen(np.full((12, 9), w_t.max_int))
    x = np.full((3, 12), x_t.max_int, np.int64)
    narrow = FixedType(12, -2, True, "TRN", "WRAP")  # the sums wrap: the general path
    assert M.dense_cast(x, x_t, w, w_t, None, None, narrow, FixedType(8, 4)) is None
    wide = FixedType(40, 26)
    big = np.zeros((M.SMALL_MACS // w.size + 1, 12), np.int64)
    assert M.dense_cast(big, x_t, w, w_t, None, None, wide, FixedType(8, 4)) is None
    assert M.dense_cast(x, x_t, w, w_t, None, None, wide, FixedType(8, 4)) is not None
