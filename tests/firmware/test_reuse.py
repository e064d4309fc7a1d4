"""Reuse factor: time-multiplexed dense layers stay bit-exact, and the measured II is the factor."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import lightspeed
from lightspeed import firmware
from lightspeed.cli import main
from lightspeed.errors import ConfigError
from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.netlist import evaluate
from lightspeed.firmware.reuse import design_ii, groups, layer_factors
from lightspeed.firmware.verilog import build_design
from lightspeed.fixed import quantize_float
from tests.conftest import make_mlp
from tests.firmware.check import skip_without
from tests.firmware.models import calib, quantized, random_vectors


def _interpreted_exact(q, opts: FirmwareOptions, n: int = 400) -> bool:
    """The lowered netlist, interpreted on NumPy, equals the emulator bit for bit."""
    d = build_design(q, opts)
    X = random_vectors(q, n=n)
    ref = q.run(X)
    got = evaluate(d.nl, {p["port"]: quantize_float(X[t], p["type"]) for t, p in d.inputs.items()})
    return all(
        np.array_equal(got[p["port"]].reshape(n, -1), np.asarray(ref[t].m).reshape(n, -1))
        for t, p in d.outputs.items()
    )


def test_groups():
    assert groups(8, 1) == (1, 8)
    assert groups(8, 2) == (2, 4)
    assert groups(5, 2) == (2, 3)
    assert groups(5, 4) == (3, 2)  # 2 outputs per clock fill 3 clocks
    assert groups(5, 16) == (5, 1)  # never fewer than one output per clock


@pytest.mark.parametrize("kind", ["mlp_auto", "mlp_fixed16", "mlp_w6", "modes", "residual"])
@pytest.mark.parametrize("rf", [2, 3, 5])
def test_netlist_bit_exact(kind, rf):
    """Every typing (saturating accumulators that overflow included) at several factors."""
    assert _interpreted_exact(quantized(kind), FirmwareOptions(reuse=rf))


def test_resources_fall_with_the_factor():
    """Multipliers, adders and ROMs scale as 1/RF (16-bit weights: every product a DSP)."""
    q = quantized("mlp_fixed16")
    est = {rf: firmware.estimate(q, multipliers="dsp", reuse=rf) for rf in (2, 4, 8)}
    assert est[2].ii == 2 and est[8].ii == 8
    assert est[4].dsp <= 0.6 * est[2].dsp and est[8].dsp <= 0.6 * est[4].dsp
    assert est[8].lut < est[4].lut < est[2].lut


def test_per_layer_factors_and_design_ii():
    q = quantized("mlp_auto")  # fc0, fc1, fc2
    assert layer_factors(q, FirmwareOptions()) == {}
    assert layer_factors(q, FirmwareOptions(reuse=2)) == {"fc0": 2, "fc1": 2, "fc2": 2}
    opts = FirmwareOptions(reuse=2, layer_reuse=(("fc1", 4), ("fc2", 1)))
    assert layer_factors(q, opts) == {"fc0": 2, "fc1": 4}
    assert design_ii(q, opts) == 4
    assert _interpreted_exact(q, opts)
    with pytest.raises(ConfigError, match="not in the model"):
        layer_factors(q, FirmwareOptions(layer_reuse=(("nope", 2),)))
    with pytest.raises(ConfigError, match="dense layers only"):
        layer_factors(q, FirmwareOptions(layer_reuse=(("relu0", 2),)))
    with pytest.raises(ConfigError, match="positive integer"):
        FirmwareOptions(reuse=0)


def test_reuse_from_the_compile_config(tmp_path):
    g = make_mlp((16, 16, 8, 5))
    q = lightspeed.quantize(g, "auto", calib(g), config={"layers": {"fc1": {"reuse": 4}}})
    assert layer_factors(q, FirmwareOptions()) == {"fc1": 4}
    assert layer_factors(q, FirmwareOptions(reuse=2)) == {"fc0": 2, "fc1": 4, "fc2": 2}
    with pytest.raises(ConfigError, match="positive integer"):
        lightspeed.quantize(g, "auto", calib(g), config={"layers": {"fc1": {"reuse": "x"}}})


def test_hls_pragmas_follow_the_factor(tmp_path):
    q = quantized("mlp_auto")  # 16 -> 16 -> 8 -> 5
    fw = firmware.generate(q, tmp_path / "hls", target="hls", reuse={"fc0": 4})
    text = fw.read("cpp")
    assert "#pragma HLS PIPELINE II=4" in text
    assert "#pragma HLS ARRAY_PARTITION variable=fc0_w cyclic factor=4 dim=1" in text
    assert "#pragma HLS ALLOCATION operation instances=mul limit=64" in text  # 16 in x 4 out
    assert "#pragma HLS UNROLL factor=4" in text
    assert "variable=fc1_w cyclic" not in text  # fc1 stays fully parallel
    plain = firmware.generate(q, tmp_path / "hls1", target="hls").read("cpp")
    assert "#pragma HLS PIPELINE II=1" in plain and "ALLOCATION" not in plain


def test_fit_suggests_a_reuse_factor():
    from lightspeed.firmware.fit import quick_estimate, refusal, suggest_reuse
    from lightspeed.firmware.parts import get_part

    q = quantized("mlp_fixed16")
    opts = FirmwareOptions(multipliers="dsp")
    part = get_part("xc7a100t")
    full = quick_estimate(q, part, opts)
    for rf in (2, 4):
        assert quick_estimate(q, part, FirmwareOptions(multipliers="dsp", reuse=rf)).dsp < full.dsp
    tiny = replace(part, name="tiny", dsp=int(full.dsp * 0.4))
    rf, rep = suggest_reuse(q, tiny, opts)
    assert rf > 1 and rep.fits
    msg = str(refusal(quick_estimate(q, tiny, opts), reuse=(rf, rep)))
    assert f"--reuse {rf}" in msg


@pytest.mark.parametrize("rf", [1, 2, 4])
def test_rtl_bit_exact_and_measured_ii(rf, tmp_path):
    """Verilator: every output bit equals the emulator, and a vector is taken every RF clocks."""
    skip_without("find_verilator", "find_make", "find_cxx")
    q = quantized("modes")  # every rounding/overflow mode, accumulators that saturate
    fw = firmware.generate(q, tmp_path / "fw", reuse=rf)
    assert fw.ii == rf
    r = firmware.check(fw, random_vectors(q, n=1000), q=q)
    assert r["exact"], r["mismatches"]
    assert r["ii"] == rf
    assert r["latency"] == fw.latency
    text = fw.read("rtl")
    assert ("ready_in" in text) == (rf > 1)


def test_rtl_mixed_factors(tmp_path):
    """Layers at different factors in one design: the design runs at the largest."""
    skip_without("find_verilator", "find_make", "find_cxx")
    q = quantized("mlp_w6")
    fw = firmware.generate(q, tmp_path / "fw", reuse={"fc0": 3, "fc2": 2})
    r = firmware.check(fw, random_vectors(q, n=1000), q=q)
    assert r["exact"], r["mismatches"]
    assert r["ii"] == 3


def test_cli_reuse(tmp_path, capsys):
    q = quantized("mlp_w6")
    q.save(tmp_path / "m")
    fw = tmp_path / "fw"
    assert main(["firmware", str(tmp_path / "m"), "-o", str(fw), "--reuse", "4"]) == 0
    assert "II=4" in capsys.readouterr().out
    assert firmware.load_fwdir(fw).ii == 4
    assert "initiation interval 4" in (fw / "README.md").read_text()
    args = ["firmware", str(tmp_path / "m"), "-o", str(tmp_path / "fw2")]
    assert main([*args, "--reuse", "fc1=2", "--reuse", "fc2=3"]) == 0
    assert firmware.load_fwdir(tmp_path / "fw2").ii == 3
    assert main([*args, "--reuse", "x=2"]) == 2
    assert "not in the model" in capsys.readouterr().err
    assert main([*args, "--reuse", "two"]) == 2
    assert main([*args, "--reuse", "2", "--reuse", "fc1=4"]) == 2
