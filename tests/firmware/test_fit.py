"""Know before you build: the graph-level estimate, and refusing designs that cannot fit."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

import lightspeed
from lightspeed.cli import main
from lightspeed.errors import ConfigError
from lightspeed.firmware import estimate, generate
from lightspeed.firmware.fit import csd_digits, quick_estimate
from lightspeed.firmware.parts import get_part
from lightspeed.zoo import model_path


@pytest.fixture(scope="module")
def tagger():
    return lightspeed.load(str(model_path("jet_tagger")))


def test_csd_digits():
    assert [csd_digits(c) for c in (0, 1, 3, 7, 11, 15, 85, -7)] == [0, 1, 2, 2, 3, 2, 4, 2]


@pytest.mark.parametrize("precision", ["auto", "ap_fixed<16,6>", "ap_fixed<8,3>", "ap_fixed<6,2>"])
def test_quick_estimate_tracks_the_netlist_estimate(tagger, precision):
    x = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    q = lightspeed.quantize(tagger, precision=precision, calibration=x)
    quick = quick_estimate(q, get_part("xcvu9p"))
    full = estimate(q)
    assert 0.75 <= quick.lut / full.lut <= 1.25, (quick.lut, full.lut)
    assert quick.dsp == pytest.approx(full.dsp, abs=2)


def _wide_mlp(tmp_path):
    """128 -> 1024 -> 1024 -> 1024 -> 10 at 16 bits: many times a VU9P."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    sizes = (128, 1024, 1024, 1024, 10)
    nodes, inits, cur = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = rng.normal(scale=a**-0.5, size=(a, b)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [cur, f"w{i}"], [f"h{i}"]))
        cur = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 128])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "wide.onnx"
    onnx.save(model, path)
    return path


def test_firmware_refuses_a_design_ten_times_too_big_before_writing(tmp_path, capsys):
    compiled = tmp_path / "wide"
    assert main(["compile", str(_wide_mlp(tmp_path)), "--precision", "ap_fixed<16,6>",
                 "-o", str(compiled), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = main(["firmware", str(compiled), "-o", str(tmp_path / "fw")])
    took = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and took < 5, took
    assert "does not fit xcvu9p" in err and "LUT" in err and "DSP" in err
    assert "--force" in err and "narrower types" in err
    assert not (tmp_path / "fw").exists()  # nothing written


def test_force_and_part(tagger, tmp_path):
    x = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    q = lightspeed.quantize(tagger, precision="auto", calibration=x)
    with pytest.raises(ConfigError, match="does not fit xc7a100t"):
        generate(q, tmp_path / "small", part="xc7a100t")
    fw = generate(q, tmp_path / "forced", part="xc7a100t", force=True)
    assert (fw.path / "rtl").is_dir()
    generate(q, tmp_path / "big", part="xcvu13p")  # fits
