"""Jet files: lightspeed HDF5/Parquet round trips and the public hls4ml formats."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from lightspeed.data import CLASSES, FEATURES, JetSample, load_hls4ml, load_jets, save_jets
from lightspeed.errors import InputError


def _sample(n: int = 40, constituents: bool = True) -> JetSample:
    rng = np.random.default_rng(0)
    extras = {
        "jet_pt": rng.uniform(300, 900, n).astype(np.float32),
        "rings": rng.uniform(0, 100, (n, 15)).astype(np.float32),
    }
    if constituents:
        extras["constituents"] = rng.normal(size=(n, 8, 3)).astype(np.float32)
    return JetSample(
        rng.normal(size=(n, 16)).astype(np.float32),
        rng.integers(0, 5, n),
        extras,
        {"note": "synthetic", "config": {"seed": 3}},
    )


@pytest.mark.parametrize("suffix", [".h5", ".parquet"])
def test_round_trip(tmp_path, suffix) -> None:
    pytest.importorskip("pyarrow") if suffix == ".parquet" else None
    s = _sample()
    path = save_jets(s, tmp_path / f"jets{suffix}")
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file
    r = load_jets(path)
    np.testing.assert_array_equal(r.features, s.features)
    np.testing.assert_array_equal(r.labels, s.labels)
    assert r.labels.dtype == np.int64
    assert set(r.extras) == set(s.extras)
    for k in s.extras:
        np.testing.assert_array_equal(r.extras[k], s.extras[k])
    assert r.meta == s.meta
    assert r.feature_names == FEATURES and r.class_names == CLASSES


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(InputError, match="unknown jet file type"):
        save_jets(_sample(), tmp_path / "jets.txt")
    with pytest.raises(InputError, match="does not exist"):
        load_jets(tmp_path / "nope.h5")
    with pytest.raises(InputError, match="expected"):
        JetSample(np.zeros((3, 16), np.float32), np.zeros(4, np.int64))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        load_jets(tmp_path / "junk.h5")


def test_split_and_one_hot() -> None:
    s = _sample(100, constituents=False)
    tr, te = s.split(0.25, seed=1)
    assert len(te) == 25 and len(tr) == 75
    assert not set(map(tuple, tr.features)) & set(map(tuple, te.features))
    tr2, _ = s.split(0.25, seed=1)
    np.testing.assert_array_equal(tr.features, tr2.features)
    oh = s.one_hot()
    assert oh.shape == (100, 5) and np.array_equal(oh.argmax(1), s.labels)


def _hls4ml_columns(s: JetSample) -> tuple[list[str], np.ndarray]:
    """A Zenodo-like 'jets' matrix: extra columns around the 16 features and the one-hot labels."""
    names = [
        "j_ptfrac",
        "j_pt",
        *FEATURES[:8],
        "j_tau21_b1",
        *FEATURES[8:],
        *(f"j_{c}" for c in CLASSES),
        "j_index",
    ]
    cols = {n: np.arange(len(s), dtype=np.float64) for n in names}
    for i, n in enumerate(FEATURES):
        cols[n] = s.features[:, i].astype(np.float64)
    for k, c in enumerate(CLASSES):
        cols[f"j_{c}"] = (s.labels == k).astype(np.float64)
    return names, np.stack([cols[n] for n in names], axis=1)


def test_hls4ml_zenodo_h5(tmp_path) -> None:
    s = _sample(constituents=False)
    names, jets = _hls4ml_columns(s)
    # As in the Zenodo files: 17 names for 16 columns (j1_pdgid is named but not stored).
    pnames = [
        f"j1_{n}"
        for n in [
            "px",
            "py",
            "pz",
            "e",
            "erel",
            "pt",
            "ptrel",
            "eta",
            "etarel",
            "etarot",
            "phi",
            "phirel",
            "phirot",
            "deltaR",
            "costheta",
            "costhetarel",
            "pdgid",
        ]
    ]
    cons = np.random.default_rng(1).normal(size=(len(s), 5, 16))
    with h5py.File(tmp_path / "jetImage_0_100p.h5", "w") as f:
        f["jets"] = jets
        f["jetFeatureNames"] = np.array([n.encode() for n in names])
        f["jetConstituentList"] = cons
        f["particleFeatureNames"] = np.array([n.encode() for n in pnames])
    r = load_jets(tmp_path / "jetImage_0_100p.h5")
    np.testing.assert_allclose(r.features, s.features)
    np.testing.assert_array_equal(r.labels, s.labels)
    got = r.constituents
    assert got.shape == (len(s), 5, 3)
    np.testing.assert_allclose(got[..., 0], cons[..., pnames.index("j1_pt")], rtol=1e-6)
    np.testing.assert_allclose(got[..., 2], cons[..., pnames.index("j1_phi")], rtol=1e-6)


def test_hls4ml_t_allpar_h5(tmp_path) -> None:
    s = _sample(constituents=False)
    names, jets = _hls4ml_columns(s)
    table = np.zeros(len(s), dtype=[(n, "f4") for n in names])
    for i, n in enumerate(names):
        table[n] = jets[:, i]
    with h5py.File(tmp_path / "processed.z", "w") as f:
        f["t_allpar_new"] = table
    r = load_hls4ml(tmp_path / "processed.z")
    np.testing.assert_allclose(r.features, s.features)
    np.testing.assert_array_equal(r.labels, s.labels)


def test_hls4ml_openml_csv_and_arff(tmp_path) -> None:
    s = _sample(12, constituents=False)
    header = ",".join([*FEATURES, "class"])
    lines = [
        ",".join([*(repr(float(v)) for v in row), CLASSES[y]])
        for row, y in zip(s.features, s.labels, strict=True)
    ]
    (tmp_path / "hlf.csv").write_text("\n".join([header, *lines]) + "\n")
    arff = ["% OpenML hls4ml_lhc_jets_hlf", "@RELATION jets"]
    arff += [f"@ATTRIBUTE {n} NUMERIC" for n in FEATURES]
    arff += ["@ATTRIBUTE class {g,q,t,w,z}", "@DATA", *lines]
    (tmp_path / "hlf.arff").write_text("\n".join(arff) + "\n")
    for name in ("hlf.csv", "hlf.arff"):
        r = load_jets(tmp_path / name)
        np.testing.assert_allclose(r.features, s.features, rtol=1e-6)
        np.testing.assert_array_equal(r.labels, s.labels)


def test_hls4ml_missing_columns(tmp_path) -> None:
    (tmp_path / "bad.csv").write_text("j_zlogz,class\n1.0,g\n")
    with pytest.raises(InputError, match="lacks the hls4ml columns"):
        load_jets(tmp_path / "bad.csv")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(InputError, match="neither"):
        load_jets(tmp_path / "other.h5")
