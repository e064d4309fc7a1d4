"""benchmarks/firmware_da4ml.py: the matrices it builds and (where da4ml is installed) the peer run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "firmware_da4ml.py"


def _script():
    spec = importlib.util.spec_from_file_location("firmware_da4ml", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("firmware_da4ml", module)
    spec.loader.exec_module(module)
    return module


def _matrix(seed=0, shape=(6, 4)):
    rng = np.random.default_rng(seed)
    w_float = rng.normal(0, 0.4, shape)
    w = np.clip(np.round(w_float * 32), -32, 31).astype(np.int64)
    return w_float, w, rng.integers(-32, 32, shape[1])


def test_prune_zeros_the_smallest_magnitudes():
    fd = _script()
    w_float, w, _ = _matrix(shape=(10, 10))
    p = fd.prune(w, w_float, 0.7)
    assert np.count_nonzero(p == 0) >= 70
    keep = np.abs(w_float) > np.sort(np.abs(w_float), axis=None)[69]
    assert np.array_equal(p[keep], w[keep]) and np.all(p[~keep] == 0)


@pytest.mark.parametrize("in_t", ["ap_fixed<16,6>", "ap_ufixed<6,0>"])
def test_lightspeed_layer_uses_the_integers_and_exact_sums(in_t):
    fd = _script()
    _, w, b = _matrix()
    x = fd.test_inputs(in_t, 50, w.shape[0])
    q = fd.lightspeed_layer(w, b, in_t, "exact")
    f = fd.KIF[in_t][2]
    want = ((x * 2.0**f).astype(np.int64) @ w + (b << f)) * 2.0 ** -(f + fd.WF)
    assert np.array_equal(q.predict(x), want)
    assert x.min() == fd.test_inputs(in_t, 2, 3).min()  # the extreme vectors are included
    hls = fd.lightspeed_layer(w, b, in_t, "hls4ml")
    assert str(hls.precision["fc"]["accum"]) == "ap_fixed<16,6>"


def test_da4ml_peer_matches_the_emulator_on_exact_sums(tmp_path):
    fd = _script()
    if not fd.peer_python().exists():
        pytest.skip(f"no da4ml venv at {fd.peer_python()} (set DA4ML_PYTHON)")
    _, w, b = _matrix(1)
    x = fd.test_inputs("ap_ufixed<6,0>", 200, w.shape[0])
    q = fd.lightspeed_layer(w, b, "ap_ufixed<6,0>", "exact")
    da = fd.run_da4ml(w, b, "ap_ufixed<6,0>", "exact", tmp_path, x, timeout=0)
    assert np.array_equal(da["y"], q.predict(x))
    assert da["latency_cycles"] == da["stages"] + 1 >= 2
    assert "module da4ml_dense" in fd.da4ml_verilog(tmp_path / "prj")


def test_compare_outputs_counts_lsbs_around_the_wrap():
    from lightspeed.fixed import parse_type

    fd = _script()
    t = parse_type("ap_fixed<4,4>")  # integers -8..7, wrapping
    r = fd.compare_outputs(np.array([[-8.0, 3.0, 0.0]]), np.array([[7.0, 1.0, 0.0]]), t)
    assert r["outputs_differing"] == 2 and r["max_diff_lsb"] == 2.0 and not r["identical"]
