"""Fast paths of ``quantize_float`` (NumPy and the optional numba kernel) and of the
chunked emulator give exactly the bits of the definition / the reference paths."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lightspeed import _fixed_jit, emulate
from lightspeed.errors import InputError
from lightspeed.fixed import OVERFLOW_MODES, QUANT_MODES, FixedType, kernel_args, quantize_float
from lightspeed.ops import _mac_jit
from tests import test_fixed_xilinx as xil
from tests.test_fixed_xilinx import checked, checker  # noqa: F401 (fixtures: g++ + ap_fixed.h)


def _types(rounding: str, overflow: str) -> list[FixedType]:
    shapes = [(1, 1), (2, 0), (8, 3), (12, -2), (19, 9), (4, 9), (32, 16), (53, 20)]
    shapes += [(61, 30), (62, 40), (63, 10), (64, 64), (64, 1)]
    return [FixedType(w, i, s, rounding, overflow) for w, i in shapes for s in (True, False)]


def _ordinary(t: FixedType, rng: np.random.Generator) -> np.ndarray:
    """Values the kernel handles itself: ties, +-1 ulp around them, tiny, out of range."""
    lsb = np.ldexp(1.0, -t.frac)
    k = rng.integers(-(1 << min(t.width + 1, 50)), 1 << min(t.width + 1, 50), 40).astype(float)
    ties = np.concatenate([(k + 0.5) * lsb, (k + 0.25) * lsb, k * lsb, [0.5 * lsb, -0.5 * lsb]])
    nz = ties[ties != 0]  # (next to 0 lie subnormals: the exact path's business)
    near = np.concatenate([np.nextafter(nz, np.inf), np.nextafter(nz, -np.inf)])
    tiny = np.array([2.0**-60, -(2.0**-60), 2.0**-54, -(2.0**-54), 1e-9, -1e-9]) * lsb
    edges = np.array([t.max_value, t.min_value, t.max_value + lsb, t.min_value - lsb])
    big = np.array([2.0**61, -(2.0**61), 2.0**62 - 2.0**9, -(2.0**62) + 2.0**9]) * lsb
    rand = rng.normal(0, 1, 40) * min(max(t.max_value, lsb) * 2, 2.0**60 * lsb)
    x = np.concatenate([ties, near, tiny, edges, big, rand, [0.0, -0.0]])
    return x[np.abs(x) < 2.0**62 * lsb]  # (wider range ends: in _special)


def _special(t: FixedType) -> np.ndarray:
    """Values the kernel hands back to the exact path."""
    lsb = np.ldexp(1.0, -t.frac)
    edges = [t.max_value, t.min_value, t.max_value + lsb, t.min_value - lsb]
    return np.array([2.0**62 * lsb, -(2.0**62) * lsb, 1e300, -1e300, 5e-324, -5e-324, *edges])


@pytest.fixture
def jit(monkeypatch):
    """quantize_float forced through the numba kernel; records whether it took each call."""
    k = _fixed_jit.kernels()
    if k is None:
        pytest.skip("numba not installed or LIGHTSPEED_NO_JIT set")
    monkeypatch.setattr(_fixed_jit, "MIN_ELEMS", 0)
    taken: list[bool] = []
    real = _fixed_jit.quantize

    def spy(x, frac, args):
        out = real(x, frac, args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(_fixed_jit, "quantize", spy)
    return taken


@pytest.fixture
def numpy_only(monkeypatch):
    monkeypatch.setattr(_fixed_jit, "quantize", lambda x, frac, args: None)


def _check_all_modes(rng: np.random.Generator, dtype) -> int:
    n_sets = 0
    for rounding in QUANT_MODES:
        for ovf in OVERFLOW_MODES:
            for t in _types(rounding, ovf):
                for x in (_ordinary(t, rng), _special(t)):
                    x = x[np.abs(x) < np.finfo(dtype).max].astype(dtype)
                    if n_sets % 2 == 0:  # float32 rounding may push values to 2**62: drop them
                        x = x[np.abs(np.ldexp(x.astype(np.float64), t.frac)) < 2.0**62]
                    got = quantize_float(x, t)
                    ref = [xil._ref_quantize(v, t) for v in x.tolist()]  # the exact definition
                    assert [int(v) for v in got.ravel()] == ref, (t, dtype)
                    n_sets += 1
    return n_sets


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_path_matches_definition(numpy_only, dtype) -> None:
    assert _check_all_modes(np.random.default_rng(1), dtype) == 28 * 26 * 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jit_kernel_matches_definition(jit, dtype) -> None:
    assert _check_all_modes(np.random.default_rng(2), dtype) == 28 * 26 * 2
    # the kernel ran on the ordinary sets and left every special set to the exact path
    assert sum(jit) >= 28 * 26 - 6 * 7 and not any(jit[1::2])


def test_jit_kernel_matches_numpy_path_on_a_grid(monkeypatch) -> None:
    """Every value of a fine grid (including +-0.5 LSB in (-1/2, 0)), both paths, same bits."""
    if _fixed_jit.kernels() is None:
        pytest.skip("numba not installed or LIGHTSPEED_NO_JIT set")
    x = np.concatenate([np.linspace(-3, 3, 6001), np.ldexp(np.arange(-2000, 2001), -10)])
    x = x[x != 0]  # (next to 0 lie subnormals: the exact path's business)
    x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf), [0.0, -0.0]])
    x = x.reshape(2, -1)
    for rounding in QUANT_MODES:
        for ovf in OVERFLOW_MODES:
            for t in (FixedType(8, 3, True, rounding, ovf), FixedType(6, 1, False, rounding, ovf)):
                for dtype in (np.float64, np.float32):
                    xd = x.astype(dtype)
                    with monkeypatch.context() as m:
                        m.setattr(_fixed_jit, "quantize", lambda a, frac, args: None)
                        ref = quantize_float(xd, t)
                    got = _fixed_jit.quantize(xd, t.frac, kernel_args(t))
                    assert got is not None and got.dtype == np.int64 and got.shape == x.shape
                    assert np.array_equal(got, ref), t


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_finite_raises_the_same_error(jit, bad, dtype) -> None:
    x = np.array([1.0, bad, 2.0, bad], dtype=dtype)
    with pytest.raises(InputError, match="input contains 2 NaN/Inf"):
        quantize_float(x, FixedType(8, 4, True, "RND", "SAT"))


def test_double_to_fixed_matches_xilinx_through_the_kernel(jit, request, monkeypatch) -> None:
    """Xilinx's ap_fixed.h checker cases, each value on its own through the kernel."""
    _, out = request.getfixturevalue("checked")  # skips without g++ or the headers

    def one_by_one(x, t):
        return np.array([int(quantize_float(x[i : i + 1], t)[0]) for i in range(x.size)], object)

    monkeypatch.setattr(xil, "quantize_float", one_by_one)
    jit.clear()
    _, rerun = xil._inputs(xil._cases())
    n, bad = xil._mismatches((rerun, out), "d")
    assert n >= 100
    assert not bad, "\n".join(bad[:20])
    assert sum(jit) > len(jit) // 3  # most in-range values went through the kernel


def _mlp_model():
    import lightspeed
    from tests.conftest import make_mlp

    g = make_mlp(sizes=(15, 36, 36, 1), seed=3)
    x = np.abs(np.random.default_rng(4).normal(1, 2, (4500, 15))).astype(np.float32)
    return lightspeed.quantize(g, "auto", calibration=x[:500]), x


def test_chunk_rows_follow_the_widest_tensor(monkeypatch) -> None:
    q, _ = _mlp_model()
    monkeypatch.setattr(emulate, "CHUNK_BYTES", 8 * 36 * 300)
    assert emulate._chunk_rows(q) == 300  # the widest tensor: 36 int64 per sample
    monkeypatch.setattr(emulate, "CHUNK_ROWS", 100)
    assert emulate._chunk_rows(q) == 100  # never above CHUNK_ROWS (tests shrink it)
    monkeypatch.setattr(emulate, "CHUNK_ROWS", 4096)
    monkeypatch.setattr(emulate, "CHUNK_BYTES", 8)  # a huge tensor: MIN_CHUNK_ROWS still
    assert emulate._chunk_rows(q) == emulate.MIN_CHUNK_ROWS


def test_threads_only_for_heavy_chunks(monkeypatch) -> None:
    monkeypatch.delenv("LIGHTSPEED_THREADS", raising=False)
    assert emulate._threads(8, emulate.THREAD_MIN_ELEMS - 1) == 1
    assert emulate._threads(8, emulate.THREAD_MIN_ELEMS) == min(8, os.cpu_count() or 1)
    monkeypatch.setenv("LIGHTSPEED_THREADS", "3")
    assert emulate._threads(8, 1) == 3  # an explicit request wins


@pytest.mark.parametrize("jit_on", [False, True])
def test_chunked_run_matches_one_chunk_reference(monkeypatch, jit_on) -> None:
    """Default chunking (several chunks), with or without the kernels, against one NumPy chunk."""
    q, x = _mlp_model()
    with monkeypatch.context() as m:
        m.setattr(emulate, "CHUNK_ROWS", 10**9)
        m.setattr(emulate, "MIN_CHUNK_ROWS", 10**9)
        m.setattr(_mac_jit, "kernels", lambda: None)
        m.setattr(_fixed_jit, "quantize", lambda a, frac, args: None)
        ref = q.run({"x": x}, trace=True)
    if jit_on:
        if not emulate.load_jit():
            pytest.skip("numba not installed or LIGHTSPEED_NO_JIT set")
        monkeypatch.setattr(_fixed_jit, "MIN_ELEMS", 0)
    else:
        monkeypatch.setattr(_mac_jit, "kernels", lambda: None)
        monkeypatch.setattr(_fixed_jit, "quantize", lambda a, frac, args: None)
    assert x.shape[0] > 2 * emulate._chunk_rows(q)
    got = q.run({"x": x}, trace=True)
    assert ref.keys() == got.keys()
    for name in ref:
        assert ref[name].t == got[name].t and np.array_equal(ref[name].m, got[name].m), name
