"""Verilog simulated with Verilator is bit-exact with the emulator on 10k random vectors."""

from __future__ import annotations

import numpy as np
import pytest

from lightspeed import firmware
from lightspeed.errors import ToolMissingError
from tests.firmware.models import quantized, random_vectors


def _have_verilator() -> str | None:
    try:
        from lightspeed.firmware.tools import find_cxx, find_make, find_verilator

        find_verilator()
        find_make()
        find_cxx()
    except ToolMissingError as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(_have_verilator() is not None, reason=f"{_have_verilator()}")

# the list: demo MLP at auto precision, uniform ap_fixed<16,6>, 6-bit weights,
# Conv1D, Conv2D, lookup-table activations; plus skip connections and every ap_fixed mode
REQUIRED = ["mlp_auto", "mlp_fixed16", "mlp_w6", "conv1d", "conv2d", "lut", "residual", "modes"]


@pytest.mark.parametrize("kind", REQUIRED)
def test_rtl_bit_exact(kind, tmp_path):
    q = quantized(kind)
    fw = firmware.generate(q, tmp_path / "fw")
    X = random_vectors(q, n=10_000)
    r = firmware.check(fw, X, q=q)
    assert r["vectors"] == 10_000
    assert r["mismatches"] == []
    assert r["exact"]
    assert r["latency"] == fw.latency  # measured in simulation == what the generator reports
    assert r["ii"] == 1.0


@pytest.mark.parametrize("mult", ["dsp", "lut"])
def test_rtl_multiplier_styles(mult, tmp_path):
    q = quantized("mlp_fixed16")
    fw = firmware.generate(q, tmp_path / "fw", multipliers=mult)
    r = firmware.check(fw, random_vectors(q, n=2000), q=q)
    assert r["exact"], r["mismatches"]


def test_rtl_deep_pipeline(tmp_path):
    """A 1.5 ns clock forces registers inside the adder trees; results must not change."""
    q = quantized("mlp_auto")
    fw = firmware.generate(q, tmp_path / "fw", clock_period=1.5)
    slow = firmware.generate(q, tmp_path / "fw2", clock_period=50)
    assert fw.latency > slow.latency
    X = random_vectors(q, n=2000)
    y, latency, ii = firmware.simulate(fw, X)
    assert latency == fw.latency and ii == 1.0
    np.testing.assert_array_equal(y, q.predict(X["x"]))


@pytest.mark.slow
def test_rtl_larger_cnn(tmp_path):
    q = quantized("cnn_large")
    fw = firmware.generate(q, tmp_path / "fw")
    r = firmware.check(fw, random_vectors(q, n=10_000), q=q)
    assert r["exact"], r["mismatches"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["auto", "ap_fixed<16,6>", "w6"])
def test_rtl_full_jet_mlp(precision, tmp_path):
    """The full 16->64->32->32->5 MLP (builds take ~1-2 min)."""
    import lightspeed
    from lightspeed.quantize import AutoOptions
    from tests.conftest import make_mlp
    from tests.firmware.models import calib

    g = make_mlp()
    opts = AutoOptions(weight_bits=6) if precision == "w6" else None
    q = lightspeed.quantize(g, "auto" if precision == "w6" else precision, calib(g), options=opts)
    fw = firmware.generate(q, tmp_path / "fw")
    r = firmware.check(fw, random_vectors(q, n=10_000), q=q)
    assert r["exact"], r["mismatches"]
