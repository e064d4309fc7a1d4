"""The CLI contract: compile / predict / report / export exit codes and outputs."""

import json

import numpy as np
import pytest

import lightspeed
from lightspeed.cli import main
from lightspeed.data import load_default_jets
from lightspeed.zoo import model_path


@pytest.fixture(scope="module")
def jets():
    return load_default_jets().features[:400].astype(np.float32)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, jets):
    d = tmp_path_factory.mktemp("cli")
    np.save(d / "cal.npy", jets)
    out = d / "model"
    rc = main(
        [
            "compile",
            str(model_path("jet_tagger")),
            "-o",
            str(out),
            "--calibration",
            str(d / "cal.npy"),
            "--quiet",
        ]
    )
    assert rc == 0
    return out


def test_compile_predict_report(compiled, jets, tmp_path, capsys):
    np.save(tmp_path / "x.npy", jets[:50])
    assert main(["predict", str(compiled), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                 "--trace", str(tmp_path / "trace")]) == 0  # fmt: skip
    y = np.load(tmp_path / "y.npy")
    q = lightspeed.load_compiled(compiled)
    assert np.array_equal(y, q.predict(jets[:50]))
    traced = {p.stem for p in (tmp_path / "trace").glob("*.npz")}
    assert len(traced) == len(q.graph.nodes) + 1
    t = np.load(tmp_path / "trace" / f"{q.output_names[0]}.npz")
    assert np.array_equal(t["fixed"], y)
    capsys.readouterr()
    assert main(["report", str(compiled), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["precision"] == "auto" and len(rep["layers"]) == len(q.graph.nodes)


def test_uniform_precision_with_config(tmp_path, jets):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("layers:\n  n6_Gemm:\n    result: ap_fixed<20,10>\n")
    out = tmp_path / "u"
    rc = main(["compile", str(model_path("jet_tagger")), "-o", str(out), "--precision", "ap_fixed<16,6>",
               "--config", str(cfg), "--quiet"])  # fmt: skip
    assert rc == 0
    q = lightspeed.load_compiled(out)
    assert str(q.precision["n6_Gemm"]["result"]) == "ap_fixed<20,10>"
    assert str(q.precision["n0_Gemm"]["weight"]) == "ap_fixed<16,6>"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["compile", "missing.onnx", "-o", "{tmp}/o", "--precision", "ap_fixed<16,6>"],
            "missing.onnx",
        ),
        (["compile", "{model}", "-o", "{tmp}/o"], "calibration"),
        (["compile", "{model}", "-o", "{tmp}/o", "--precision", "ap_fixed<16"], "cannot parse"),
        (["compile", "{model}", "-o", "{tmp}/o", "--precision", "ap_fixed<65,6>"], "width 65"),
        (["compile", "{model}", "-o", "{tmp}/o", "--calibration", "{tmp}/nan.npy"], "NaN"),
        (["compile", "{model}", "-o", "{tmp}/o", "--calibration", "{tmp}/wrong.npy"], "shape"),
        (
            ["predict", "{tmp}", "--input", "x.npy", "--output", "y.npy"],
            "not a lightspeed compiled model",
        ),
    ],
)
def test_errors_are_one_line_and_nonzero(args, message, tmp_path, capsys):
    np.save(tmp_path / "nan.npy", np.full((4, 16), np.nan, dtype=np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((4, 15), dtype=np.float32))
    argv = [a.format(tmp=tmp_path, model=model_path("jet_tagger")) for a in args]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_predict_wrong_input_shape(compiled, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((3, 7), dtype=np.float32))
    rc = main(
        [
            "predict",
            str(compiled),
            "--input",
            str(tmp_path / "bad.npy"),
            "--output",
            str(tmp_path / "y.npy"),
        ]
    )
    assert rc == 2
    assert "expected (batch, 16)" in capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for verb in ("compile", "predict", "report", "export", "demo"):
        assert verb in out


@pytest.mark.parametrize("verb", ["predict", "firmware"])
def test_model_file_instead_of_compiled_dir(verb, tmp_path, capsys):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(model_path("jet_tagger").read_bytes())
    extra = ["--input", "x.npy", "--output", "y.npy"] if verb == "predict" else ["-o", "fw"]
    rc = main([verb, str(onnx), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert (
        f"{onnx} is a model file; compile it first: `lightspeed compile {onnx} -o compiled/`" in err
    )
    assert f"-o {onnx}" not in err
    assert onnx.read_bytes() == model_path("jet_tagger").read_bytes()
