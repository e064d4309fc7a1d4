"""The Pythia8 + FastJet generator: physics sanity, reproducibility, resume, missing extras."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lightspeed.data import CLASSES, FEATURES, load_jets
from lightspeed.data import jets as jetgen
from lightspeed.data.jets import JetGenConfig, generate_jets
from lightspeed.errors import InputError, ToolMissingError

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")
pytest.importorskip("awkward")


def _masses(sample, cls):
    return sample.features[sample.labels == CLASSES.index(cls), FEATURES.index("j_mass_mmdt")]


def test_small_run_in_process(tmp_path) -> None:
    cfg = JetGenConfig(n_jets=50, seed=11, chunk_size=10)
    path = generate_jets(tmp_path / "j.h5", cfg, workers=0, progress=False)
    s = load_jets(path)
    assert len(s) == 50
    assert np.array_equal(np.bincount(s.labels), [10] * 5)
    assert np.isfinite(s.features).all()
    assert not (tmp_path / "j.h5.parts").exists()  # parts are removed once the file is complete
    # boson / top jets are contained, so even 10 jets have their median near the mass
    assert 65 < np.median(_masses(s, "w")) < 95
    assert 75 < np.median(_masses(s, "z")) < 105
    assert 140 < np.median(_masses(s, "t")) < 200
    assert np.median(_masses(s, "q")) < 60
    assert s.meta["config"]["seed"] == 11


def test_interrupt_resume_is_identical(tmp_path, monkeypatch) -> None:
    cfg = JetGenConfig(n_jets=6, seed=5, chunk_size=1, classes=("q", "w"))
    ref = load_jets(generate_jets(tmp_path / "ref.h5", cfg, workers=0, progress=False))

    real = jetgen._run_chunk
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(jetgen, "_run_chunk", flaky)
    out = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        generate_jets(out, cfg, workers=0, progress=False)
    assert not out.exists()
    assert len(list((tmp_path / "run.h5.parts").glob("*.npz"))) == 3

    monkeypatch.setattr(jetgen, "_run_chunk", real)
    # other settings do not silently mix with the stored chunks
    with pytest.raises(InputError, match="other settings"):
        generate_jets(
            out, JetGenConfig(n_jets=10, seed=6, chunk_size=1, classes=("q", "w")), workers=0
        )
    s = load_jets(generate_jets(out, cfg, workers=0, progress=False))
    np.testing.assert_array_equal(s.features, ref.features)
    np.testing.assert_array_equal(s.labels, ref.labels)


def test_workers_do_not_change_the_result(tmp_path) -> None:
    cfg = JetGenConfig(n_jets=4, seed=9, chunk_size=1, classes=("g", "t"))
    a = load_jets(generate_jets(tmp_path / "a.h5", cfg, workers=0, progress=False))
    b = load_jets(generate_jets(tmp_path / "b.parquet", cfg, workers=2, progress=False))
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.extras["rings"], b.extras["rings"])


def test_constituents_option(tmp_path) -> None:
    from lightspeed.data._physics import PhysicsConfig

    cfg = JetGenConfig(
        n_jets=4, seed=2, classes=("t", "q"), physics=PhysicsConfig(n_constituents=12)
    )
    s = load_jets(generate_jets(tmp_path / "c.h5", cfg, workers=0, progress=False))
    c = s.constituents
    assert c.shape == (4, 12, 3)
    pt = c[..., 0]
    assert (np.diff(pt, axis=1) <= 0).all()  # pT-ordered, zero-padded at the end
    real = pt > 0
    dphi = (c[..., 2] - s.extras["jet_phi"][:, None] + np.pi) % (2 * np.pi) - np.pi
    dr = np.hypot(c[..., 1] - s.extras["jet_eta"][:, None], dphi)
    assert (dr[real] < 0.85).all()  # constituents lie inside the R = 0.8 jet


def test_bad_requests(tmp_path, monkeypatch) -> None:
    with pytest.raises(InputError, match="unknown jet classes"):
        JetGenConfig(n_jets=10, classes=("x",))
    with pytest.raises(InputError, match="too small"):
        JetGenConfig(n_jets=3)
    with pytest.raises(InputError, match="must end in"):
        generate_jets(tmp_path / "j.csv", JetGenConfig(n_jets=5), workers=0)
    (tmp_path / "e.h5").write_bytes(b"")
    with pytest.raises(InputError, match="overwrite"):
        generate_jets(tmp_path / "e.h5", JetGenConfig(n_jets=5), workers=0)
    monkeypatch.setitem(sys.modules, "pythia8mc", None)
    with pytest.raises(ToolMissingError, match="pip install"):
        generate_jets(tmp_path / "m.h5", JetGenConfig(n_jets=5), workers=0)


def test_cli(tmp_path, capsys) -> None:
    from lightspeed.cli import main

    out = tmp_path / "cli.h5"
    rc = main(
        [
            "data",
            "jets",
            "--n",
            "5",
            "-o",
            str(out),
            "--workers",
            "0",
            "--seed",
            "4",
            "--no-progress",
        ]
    )
    assert rc == 0 and out.exists()
    assert main(["data", "info", str(out)]) == 0
    assert "5 jets" in capsys.readouterr().out
    assert main(["data", "jets", "--n", "5", "-o", str(out), "--workers", "0"]) == 2  # exists


@pytest.mark.slow
def test_mass_peaks_few_hundred_per_class(tmp_path) -> None:
    from lightspeed.data.plots import mass_peak

    cfg = JetGenConfig(n_jets=1000, seed=21, chunk_size=100)
    s = load_jets(generate_jets(tmp_path / "p.h5", cfg, workers=2, progress=False))
    assert 72 <= mass_peak(_masses(s, "w")) <= 90
    assert 83 <= mass_peak(_masses(s, "z")) <= 100
    assert 160 <= mass_peak(_masses(s, "t")) <= 185
    assert np.median(_masses(s, "z")) > np.median(_masses(s, "w"))


def test_shipped_sample_is_reproducible(tmp_path) -> None:
    """Regenerating one chunk of the shipped sample's run gives exactly jets that are in it."""
    from lightspeed.data import load_default_jets

    shipped = load_default_jets()
    cfg = shipped.meta["config"]
    assert cfg["chunk_size"] == 500
    one = JetGenConfig(n_jets=500, seed=cfg["seed"], chunk_size=500, classes=("q",))
    s = load_jets(generate_jets(tmp_path / "q.h5", one, workers=0, progress=False))
    rows = {r.tobytes() for r in shipped.features[shipped.labels == CLASSES.index("q")]}
    assert all(r.tobytes() in rows for r in s.features)
