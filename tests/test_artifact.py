import json

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import ArtifactError


@pytest.fixture
def compiled(tmp_path, mlp, rng):
    q = lightspeed.quantize(mlp, "auto", calibration=rng.normal(0, 1, (200, 16)))
    return q, q.save(tmp_path / "m")


def test_round_trip_is_bit_exact(compiled, rng):
    q, path = compiled
    q2 = lightspeed.load_compiled(path)
    x = rng.normal(0, 2, (300, 16))
    assert np.array_equal(q.predict(x), q2.predict(x))
    assert q2.precision == q.precision and q2.input_types == q.input_types
    assert lightspeed.is_compiled_dir(path)
    assert (path / "report.json").is_file()


def test_tampered_params_detected(compiled):
    _, path = compiled
    data = dict(np.load(path / "qparams.npz"))
    data["fc0/weight"] = data["fc0/weight"] + 1
    np.savez(path / "qparams.npz", **data)
    with pytest.raises(ArtifactError, match="hash"):
        lightspeed.load_compiled(path)


def test_not_a_compiled_dir(tmp_path):
    with pytest.raises(ArtifactError, match="lightspeed compile"):
        lightspeed.load_compiled(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        lightspeed.load_compiled(tmp_path / "missing")


def test_refuses_to_overwrite_foreign_dir(tmp_path, mlp, rng):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "thesis.tex").write_text("keep me")
    q = lightspeed.quantize(mlp, "ap_fixed<16,6>")
    with pytest.raises(ArtifactError, match="not a lightspeed compiled model"):
        q.save(d)
    assert (d / "thesis.tex").read_text() == "keep me"


def test_failed_save_leaves_no_partial_dir(tmp_path, mlp, monkeypatch):
    q = lightspeed.quantize(mlp, "ap_fixed<16,6>")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        q.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_previous_compile(compiled, mlp):
    _, path = compiled
    q = lightspeed.quantize(mlp, "ap_fixed<12,4>")
    q.save(path)
    assert json.loads((path / "manifest.json").read_text())["default"] == "ap_fixed<12,4>"
