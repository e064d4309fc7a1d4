"""The CLI and the bad-input paths: clear errors, never a traceback or a hang."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lightspeed import firmware
from lightspeed.cli import main
from lightspeed.errors import ArtifactError, ConfigError, InputError, UnsupportedOpError
from lightspeed.firmware.config import FirmwareOptions, parse_clock
from tests.firmware.models import quantized, random_vectors
from tests.firmware.test_rtl import _have_verilator


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    q = quantized("mlp_w6")
    d = tmp_path_factory.mktemp("model") / "m"
    q.save(d)
    return q, d


def test_firmware_sim_synth_cli(compiled, tmp_path, capsys):
    q, model_dir = compiled
    fw = tmp_path / "fw"
    assert main(["firmware", str(model_dir), "-o", str(fw), "--clock-period", "4ns"]) == 0
    assert "Verilog written" in capsys.readouterr().out
    man = json.loads((fw / "manifest.json").read_text())
    assert man["options"]["clock_period"] == 4.0 and man["target"] == "verilog"
    readme = (fw / "README.md").read_text()
    assert f"{man['latency']} clock cycles" in readme and "in_x" in readme
    assert main(["synth", str(fw), "--estimate", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["lut"] > 0 and rep["latency_cycles"] == man["latency"]
    assert rep["latency_ns"] == man["latency"] * 4.0
    # the per-layer rows add up to the totals, flip-flops included
    rows = rep["per_layer"].values()
    for k in ("lut", "ff", "dsp"):
        assert sum(r[k] for r in rows) == rep[k], k
    assert sum(r["ff"] > 0 for r in rows) >= 3  # registers are charged to their layers
    if _have_verilator() is None:
        X = random_vectors(q, n=500)["x"]
        np.save(tmp_path / "x.npy", X)
        out = tmp_path / "y.npy"
        assert (
            main(
                [
                    "sim",
                    str(fw),
                    "--input",
                    str(tmp_path / "x.npy"),
                    "--output",
                    str(out),
                    "--check",
                    "--model",
                    str(model_dir),
                    "--json",
                ]
            )
            == 0
        )
        res = json.loads(capsys.readouterr().out)
        assert res["exact"] and res["latency_cycles"] == man["latency"] and res["ii"] == 1.0
        np.testing.assert_array_equal(np.load(out), q.predict(X))


def test_wrong_input_shape_is_a_clear_error(compiled, tmp_path, capsys):
    q, _model_dir = compiled
    fw = firmware.generate(q, tmp_path / "fw")
    np.save(tmp_path / "bad.npy", np.zeros((10, 15)))
    assert main(["sim", str(fw.path), "--input", str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err
    assert "expects (batch, 16)" in err and "Traceback" not in err
    with pytest.raises(InputError, match="expects"):
        firmware.simulate(fw, np.zeros((3, 4)))


def test_firmware_dir_must_match_its_model(compiled, tmp_path):
    q, _ = compiled
    fw = firmware.generate(q, tmp_path / "fw")
    other = quantized("mlp_fixed16")
    with pytest.raises(ArtifactError, match="regenerate"):
        fw.check_model(other)
    other_dir = tmp_path / "other"
    other.save(other_dir)
    np.save(tmp_path / "x.npy", np.zeros((4, 16)))
    assert (
        main(
            [
                "sim",
                str(fw.path),
                "--input",
                str(tmp_path / "x.npy"),
                "--check",
                "--model",
                str(other_dir),
            ]
        )
        == 2
    )
    # an edited design no longer matches its manifest
    rtl = fw.path / "rtl" / "lightspeed_top.v"
    rtl.write_text(rtl.read_text().replace("assign", "assign ", 1))
    with pytest.raises(ArtifactError, match="modified after generation"):
        firmware.load_fwdir(fw.path)
    # a compiled model is not a firmware directory
    with pytest.raises(ArtifactError, match="compiled model"):
        firmware.load_fwdir(other_dir)
    with pytest.raises(ArtifactError, match="not a lightspeed firmware directory"):
        firmware.load_fwdir(tmp_path / "nothing")


def test_bad_options():
    with pytest.raises(ConfigError, match="clock"):
        parse_clock("fast")
    with pytest.raises(ConfigError):
        parse_clock("-3")
    with pytest.raises(ConfigError):
        parse_clock("0ns")
    assert parse_clock("250MHz") == 4.0 and parse_clock("2.5") == 2.5
    with pytest.raises(ConfigError, match="multiplier"):
        FirmwareOptions(multipliers="fast")
    with pytest.raises(ConfigError, match="identifier"):
        FirmwareOptions(top="1top")
    with pytest.raises(ConfigError, match="unknown part"):
        from lightspeed.firmware.parts import get_part

        get_part("xc9000")


def test_unsupported_op_is_named(tmp_path):
    import lightspeed
    from lightspeed.ir import Graph, Node, infer_shapes

    g = infer_shapes(Graph("m", {"x": (4,)}, ["y"], [Node("m", "mul", ["x", "x"], ["y"])]))
    q = lightspeed.quantize(g, "ap_fixed<8,3>")
    q.graph.nodes[0].op = "mystery_op"
    with pytest.raises(UnsupportedOpError, match="mystery_op"):
        firmware.generate(q, tmp_path / "fw")


def test_design_too_large_for_part_says_by_how_much(tmp_path, capsys):
    big = quantized("mlp_fixed16")  # 424 constant products, all DSPs with --multipliers dsp
    fw = firmware.generate(big, tmp_path / "fw", multipliers="dsp")
    assert fw.manifest["estimate"]["dsp"] > 240  # an Artix-7 100T has 240 DSP slices
    assert main(["synth", str(fw.path), "--estimate", "--part", "xc7a100t"]) == 1
    err = capsys.readouterr().err
    assert "does not fit xc7a100t" in err and "x the xc7a100t's capacity" in err
    assert main(["synth", str(fw.path), "--estimate", "--part", "xcvu9p"]) == 0


def test_tools_listing(capsys):
    assert main(["firmware", "--tools"]) == 0
    out = capsys.readouterr().out
    assert "verilator" in out and "yosys" in out


def test_demo_step(tmp_path):
    q = quantized("mlp_auto")
    res = firmware.demo_step(q, tmp_path, console=None, n_vectors=2000)
    assert res["latency_cycles"] >= 3 and res["estimate"]["lut"] > 0
    if _have_verilator() is None:
        assert res["simulation"]["exact"] and res["simulation"]["vectors"] == 2000
