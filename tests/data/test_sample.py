"""The jet sample shipped in the package: integrity and physics sanity."""

from __future__ import annotations

import numpy as np
import pytest

from lightspeed.data import CLASSES, FEATURES, default_sample_path, load_default_jets
from lightspeed.data.plots import mass_peak, mass_summary


@pytest.fixture(scope="module")
def sample():
    return load_default_jets()


def test_shapes_and_size(sample) -> None:
    n = len(sample)
    assert 20_000 <= n <= 30_000
    assert sample.features.shape == (n, len(FEATURES))
    assert sample.features.dtype == np.float32
    assert sample.feature_names == FEATURES
    assert sample.class_names == CLASSES
    for name in ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "truth_pt"):
        assert sample.extras[name].shape == (n,)
    assert sample.extras["rings"].shape == (n, 15)
    assert default_sample_path().stat().st_size < 5_000_000


def test_labels_balanced(sample) -> None:
    counts = np.bincount(sample.labels, minlength=len(CLASSES))
    assert counts.sum() == len(sample)
    assert counts.min() == counts.max()  # the generator balances classes exactly


def test_no_nan_and_ranges(sample) -> None:
    assert np.isfinite(sample.features).all()
    for arr in sample.extras.values():
        assert np.isfinite(arr).all()
    f = dict(zip(FEATURES, sample.features.T, strict=True))
    mult = f["j_multiplicity"]
    assert (mult >= 2).all() and np.array_equal(mult, np.round(mult))
    assert (f["j_zlogz"] < 0).all()
    assert (f["j_mass_mmdt"] >= 0).all()
    # C1 at beta = 0 is sum_{i<j} z_i z_j over the groomed jet: between 0 and 1/2
    assert (f["j_c1_b0_mmdt"] >= 0).all() and (f["j_c1_b0_mmdt"] <= 0.5).all()
    assert (sample.extras["jet_pt"] >= 300).all()
    assert (np.abs(sample.extras["jet_eta"]) <= 2.5).all()
    # the ring sums add up to the scalar pT of the constituents, >= the jet's vector pT
    ratio = sample.extras["rings"].sum(axis=1) / sample.extras["jet_pt"]
    assert (ratio >= 0.999).all() and np.median(ratio) < 1.05


def test_mass_peaks(sample) -> None:
    m = sample.features[:, FEATURES.index("j_mass_mmdt")]
    by = {c: m[sample.labels == k] for k, c in enumerate(CLASSES)}
    assert 72 <= mass_peak(by["w"]) <= 90
    assert 83 <= mass_peak(by["z"]) <= 100
    assert 160 <= mass_peak(by["t"]) <= 185
    assert 5 <= np.median(by["z"]) - np.median(by["w"]) <= 17  # m_Z - m_W = 10.8 GeV
    assert np.median(by["q"]) < 30 and np.median(by["g"]) < 60
    # most boson/top jets sit in their window, QCD jets mostly do not
    assert np.mean((by["w"] > 65) & (by["w"] < 95)) > 0.6
    assert np.mean((by["t"] > 140) & (by["t"] < 200)) > 0.6
    assert np.mean((by["q"] > 65) & (by["q"] < 95)) < 0.15


def test_summary_and_plot(sample, tmp_path) -> None:
    rows = {r["class"]: r for r in mass_summary(sample)}
    assert set(rows) == set(CLASSES)
    assert rows["t"]["median"] > rows["z"]["median"] > rows["w"]["median"] > rows["q"]["median"]
    from lightspeed.data.plots import plot_mass

    path = plot_mass(sample, tmp_path / "m.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metadata_records_generation(sample) -> None:
    cfg = sample.meta["config"]
    assert cfg["n_jets"] == len(sample)
    assert cfg["physics"]["pthat_min"] == 500.0 and cfg["physics"]["pthat_max"] == 1000.0
    assert sample.meta["versions"]["pythia8mc"] == "8.317.2"
