"""Fast paths of the emulator give exactly the bits of the NumPy reference.

* the numba MAC kernels (:mod:`lightspeed.ops._mac_jit`) against the NumPy
  multiply-accumulate of :mod:`lightspeed.ops.mac`, for every accumulator
  quantization x overflow mode, int32 and int64 carriers, wrap-around and
  saturation, exact and truncated products, zero inputs;
* chunked and multithreaded emulation against a single pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightspeed
from lightspeed import emulate
from lightspeed.fixed import OVERFLOW_MODES, QUANT_MODES, FixedType, quantize_float
from lightspeed.ops import _mac_jit
from lightspeed.ops import mac as mac_mod
from tests.conftest import make_cnn, make_mlp

if _mac_jit.kernels() is None:
    pytest.skip(
        "numba kernels unavailable (numba not installed or LIGHTSPEED_NO_JIT set); they are optional",
        allow_module_level=True,
    )


def _reference(monkeypatch, *args):
    with monkeypatch.context() as m:
        m.setattr(_mac_jit, "kernels", lambda: None)
        return mac_mod.mac(*args)


def _jit(monkeypatch, *args):
    with monkeypatch.context() as m:
        m.setattr(mac_mod, "JIT_MIN_WORK", 0)
        calls = []
        real = _mac_jit.kernels()
        assert real is not None
        m.setattr(_mac_jit, "kernels", lambda: calls.append(1) or real)
        out = mac_mod.mac(*args)
        return out, bool(calls)


def _ints(rng, t: FixedType, shape, zeros: float = 0.3) -> np.ndarray:
    v = rng.integers(t.min_int, t.max_int + 1, size=shape, dtype=np.int64)
    v[rng.random(shape) < zeros] = 0
    return v


@pytest.mark.parametrize("rounding", QUANT_MODES)
@pytest.mark.parametrize("ovf", OVERFLOW_MODES)
def test_jit_mac_matches_reference(monkeypatch, rounding: str, ovf: str) -> None:
    rng = np.random.default_rng(QUANT_MODES.index(rounding) * 10 + OVERFLOW_MODES.index(ovf))
    used = 0
    for k in range(8):
        wide = k >= 5  # int64 carriers
        xw = int(rng.integers(20, 30)) if wide else int(rng.integers(4, 16))
        ww = int(rng.integers(20, 30)) if wide else int(rng.integers(4, 16))
        x_t = FixedType(xw, int(rng.integers(0, xw)), bool(k % 2 == 0))
        w_t = FixedType(ww, int(rng.integers(-2, ww)), True)
        b_t = FixedType(16, 6)
        shift = [3, 0, -2, 7, 1, 5, 0, -1][k]  # product frac - accum frac
        aw = int(rng.integers(8, 30)) if not wide else int(rng.integers(30, 62))
        acc_t = FixedType(aw, aw - (x_t.frac + w_t.frac - shift), k != 3, rounding, ovf)
        n, m = int(rng.integers(1, 40)), int(rng.integers(1, 20))
        x = _ints(rng, x_t, (int(rng.integers(1, 300)), n))
        w = _ints(rng, w_t, (n, m), zeros=0.1)
        b = _ints(rng, b_t, (m,), zeros=0.0)
        args = (x, x_t, w, w_t, b, b_t, acc_t)
        ref = _reference(monkeypatch, *args)
        got, jitted = _jit(monkeypatch, *args)
        used += jitted
        assert got.dtype == ref.dtype and np.array_equal(got, ref), (k, x_t, w_t, acc_t)
    assert used >= 4  # most configurations really ran a kernel


def test_jit_mac_wraps_int32_carrier(monkeypatch) -> None:
    """Sums overflowing int32 are still right when the accumulator wraps to <= 32 bits."""
    x_t, w_t = FixedType(16, 6), FixedType(16, 6)
    acc_t = FixedType(32, 14)  # products (20 fractional bits) truncated by 2 bits
    rng = np.random.default_rng(3)
    x = np.full((50, 300), x_t.max_int, dtype=np.int64)
    x[::2] = x_t.min_int
    w = _ints(rng, w_t, (300, 7), zeros=0.0)
    w[:, 0] = w_t.max_int
    args = (x, x_t, w, w_t, None, None, acc_t)
    ref = _reference(monkeypatch, *args)
    got, jitted = _jit(monkeypatch, *args)
    assert jitted and np.array_equal(got, ref)


def test_small_batches_skip_the_jit(monkeypatch) -> None:
    x_t = FixedType(16, 6)
    calls = []
    monkeypatch.setattr(_mac_jit, "loaded", lambda: False)
    monkeypatch.setattr(_mac_jit, "kernels", lambda: calls.append(1))
    x = np.ones((4, 16), dtype=np.int64)
    mac_mod.mac(x, x_t, np.ones((16, 8), dtype=np.int64), x_t, None, None, x_t)
    assert not calls


@pytest.mark.parametrize("precision", ["ap_fixed<16,6>", "ap_fixed<12,4,RND,SAT>", "auto"])
def test_chunked_threaded_emulation_is_identical(monkeypatch, precision: str) -> None:
    rng = np.random.default_rng(5)
    for g, shape in ((make_mlp(), (16,)), (make_cnn(), None)):
        shape = shape or g.inputs["x"]
        x = rng.normal(0, 1.5, (700, *shape))
        q = lightspeed.quantize(g, precision, calibration=x[:200])
        monkeypatch.setattr(emulate, "CHUNK_ROWS", 10**9)
        monkeypatch.setattr(_mac_jit, "kernels", lambda: None)
        ref = q.run({"x": x}, trace=True)
        monkeypatch.undo()
        monkeypatch.setattr(emulate, "CHUNK_ROWS", 64)
        monkeypatch.setattr(mac_mod, "JIT_MIN_WORK", 0)
        monkeypatch.setenv("LIGHTSPEED_THREADS", "3")
        got = q.run({"x": x}, trace=True)
        monkeypatch.undo()
        assert ref.keys() == got.keys()
        for t in ref:
            assert ref[t].t == got[t].t and np.array_equal(ref[t].m, got[t].m), (precision, t)


def test_quantize_float_fast_ties_match_exact_rounding() -> None:
    """Values just above a tie inside (-1/2, 0) LSB, where y - floor(y) is inexact."""
    from fractions import Fraction

    t = FixedType(8, 8, True, "RND_MIN_INF", "SAT")
    x = np.array([-0.5 + 2.0**-55, -0.5, -0.25 - 2.0**-54, -(2.0**-60), 0.5 - 2.0**-54])
    got = quantize_float(x, t)
    for v, g in zip(x, got, strict=True):
        f = Fraction(v)
        fl = f.numerator // f.denominator
        rem = f - fl
        assert int(g) == fl + (rem > Fraction(1, 2)), v


def _conv_graph(nd: int):
    from lightspeed.ir import Graph, Node, infer_shapes

    rng = np.random.default_rng(11 + nd)
    k = (3,) * nd
    attrs = {
        "strides": [2, 1][:nd] if nd == 2 else [2],
        "dilations": [1, 2][:nd] if nd == 2 else [2],
        "pads": [1, 0, 0, 2][: 2 * nd] if nd == 2 else [1, 2],
    }
    shape = (3, 11, 9) if nd == 2 else (3, 17)
    nodes = [
        Node(
            "conv",
            "conv",
            ["x"],
            ["c"],
            attrs,
            {"weight": rng.normal(0, 0.5, (5, 3, *k)), "bias": rng.normal(0, 0.2, 5)},
        ),
        Node("relu", "relu", ["c"], ["y"]),
    ]
    return infer_shapes(Graph(f"conv{nd}d", {"x": shape}, ["y"], nodes))


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize(
    "accum",
    [
        "ap_fixed<16,6>",
        "ap_fixed<10,3,RND_CONV,SAT>",
        "ap_fixed<12,2,TRN_ZERO,SAT_ZERO>",
        "ap_fixed<40,12>",
        "ap_ufixed<9,4,RND,SAT_SYM>",
    ],
)
def test_direct_conv_kernel_matches_reference(monkeypatch, nd: int, accum: str) -> None:
    """Strides, dilations, asymmetric padding; wrapping and saturating accumulators."""
    g = _conv_graph(nd)
    x = np.random.default_rng(2).normal(0, 2, (300, *g.inputs["x"]))
    q = lightspeed.quantize(
        g, "ap_fixed<12,4,RND,SAT>", config={"layers": {"conv": {"accum": accum}}}
    )
    with monkeypatch.context() as m:
        m.setattr(_mac_jit, "kernels", lambda: None)
        ref = q.run({"x": x}, trace=True)
    calls = []
    real = _mac_jit.kernels()
    monkeypatch.setattr(mac_mod, "JIT_MIN_WORK", 0)
    monkeypatch.setattr(_mac_jit, "kernels", lambda: calls.append(1) or real)
    for rows in (300, 40):  # batch-innermost kernel (>= 64 samples) and direct one
        monkeypatch.setattr(emulate, "CHUNK_ROWS", rows)
        got = q.run({"x": x}, trace=True)
        for t in ref:
            assert np.array_equal(ref[t].m, got[t].m), (accum, t, rows)
    assert calls
