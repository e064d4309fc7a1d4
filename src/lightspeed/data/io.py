"""Reading and writing jet samples: lightspeed's own HDF5/Parquet files and the public hls4ml files.

A :class:`JetSample` is plain NumPy: ``features`` (n, 16) float32 in the
:data:`~lightspeed.data.schema.FEATURES` order, ``labels`` (n,) int64 indices
into :data:`~lightspeed.data.schema.CLASSES`, and optional per-jet extras
(kinematics, truth pT, ring pT sums, constituents).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data.schema import CLASSES, FEATURES
from lightspeed.errors import InputError, require
from lightspeed.files import atomic_file

FORMAT = "lightspeed-jets"
FORMAT_VERSION = 1
DEFAULT_SAMPLE = "jets_default.h5"


@dataclass
class JetSample:
    """Jets with the 16 hls4ml features, integer labels and optional extras."""

    features: np.ndarray
    labels: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] = FEATURES
    class_names: tuple[str, ...] = CLASSES

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.features.shape != (n, len(self.feature_names)):
            raise InputError(
                f"features have shape {self.features.shape}, expected ({n}, {len(self.feature_names)})"
            )
        for name, arr in self.extras.items():
            if len(arr) != n:
                raise InputError(f"extra '{name}' has {len(arr)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def constituents(self) -> np.ndarray | None:
        """(n, N, 3) float32 constituent (pT, eta, phi), pT-ordered and zero-padded, if stored."""
        return self.extras.get("constituents")

    def one_hot(self) -> np.ndarray:
        """Labels as a one-hot float32 matrix (n, 5), like the hls4ml dataset's j_g..j_t columns."""
        return np.eye(len(self.class_names), dtype=np.float32)[self.labels]

    def subset(self, index: np.ndarray | slice) -> JetSample:
        """Rows ``index`` of every array (a view for slices)."""
        return JetSample(
            self.features[index],
            self.labels[index],
            {k: v[index] for k, v in self.extras.items()},
            dict(self.meta),
            self.feature_names,
            self.class_names,
        )

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple[JetSample, JetSample]:
        """A reproducible random (train, test) split."""
        perm = np.random.default_rng(seed).permutation(len(self))
        n_test = round(test_fraction * len(self))
        return self.subset(np.sort(perm[n_test:])), self.subset(np.sort(perm[:n_test]))


def _to_arrays(sample: JetSample) -> dict[str, np.ndarray]:
    return {
        "features": sample.features.astype(np.float32),
        "labels": sample.labels.astype(np.int8),
        **sample.extras,
    }


def save_jets(sample: JetSample, path: str | os.PathLike[str]) -> Path:
    """Write ``sample`` to ``path`` (.h5/.hdf5 or .parquet) atomically: a temp file, then rename."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        write = _write_h5
    elif suffix == ".parquet":
        write = _write_parquet
    else:
        raise InputError(f"unknown jet file type '{path.suffix}': use .h5, .hdf5 or .parquet")
    with atomic_file(path) as tmp:
        write(sample, tmp)
    return path


def _write_h5(sample: JetSample, path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = FORMAT_VERSION
        f.attrs["feature_names"] = json.dumps(list(sample.feature_names))
        f.attrs["class_names"] = json.dumps(list(sample.class_names))
        f.attrs["meta"] = json.dumps(sample.meta)
        for name, arr in _to_arrays(sample).items():
            f.create_dataset(name, data=arr, compression="gzip", compression_opts=9, shuffle=True)


def _write_parquet(sample: JetSample, path: Path) -> None:
    pa = require("pyarrow", "data", "Parquet jet files")
    import pyarrow.parquet as pq

    cols: dict[str, Any] = {n: sample.features[:, i] for i, n in enumerate(sample.feature_names)}
    cols["label"] = sample.labels.astype(np.int8)
    for name, arr in sample.extras.items():
        if arr.ndim == 1:
            cols[name] = arr
        else:  # fixed-size list column of the flattened trailing dims
            flat = arr.reshape(len(arr), -1)
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    table = pa.table(cols)
    meta = {
        "format": FORMAT,
        "version": str(FORMAT_VERSION),
        "feature_names": json.dumps(list(sample.feature_names)),
        "class_names": json.dumps(list(sample.class_names)),
        "meta": json.dumps(sample.meta),
        "shapes": json.dumps({k: list(v.shape[1:]) for k, v in sample.extras.items()}),
    }
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, path, compression="zstd")


def load_jets(path: str | os.PathLike[str]) -> JetSample:
    """Read a jet file: lightspeed HDF5/Parquet, or a public hls4ml file (HDF5, CSV, ARFF)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"jet file '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in (".csv", ".arff"):
        return load_hls4ml(path)
    import h5py

    try:
        with h5py.File(path, "r") as f:
            ours = f.attrs.get("format") == FORMAT
    except OSError as exc:
        raise InputError(f"'{path}' is not a readable HDF5 file ({exc})") from exc
    return _read_h5(path) if ours else load_hls4ml(path)


def _read_h5(path: Path) -> JetSample:
    import h5py

    with h5py.File(path, "r") as f:
        arrays = {k: f[k][()] for k in f}
        features = np.asarray(arrays.pop("features"), dtype=np.float32)
        labels = np.asarray(arrays.pop("labels"), dtype=np.int64)
        return JetSample(
            features,
            labels,
            arrays,
            json.loads(f.attrs.get("meta", "{}")),
            tuple(json.loads(f.attrs["feature_names"])),
            tuple(json.loads(f.attrs["class_names"])),
        )


def _read_parquet(path: Path) -> JetSample:
    require("pyarrow", "data", "Parquet jet files")
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    md = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if md.get("format") != FORMAT:
        raise InputError(f"'{path}' is not a lightspeed jet Parquet file (no format tag)")
    names = tuple(json.loads(md["feature_names"]))
    shapes = json.loads(md.get("shapes", "{}"))
    features = np.stack([table.column(n).to_numpy() for n in names], axis=1).astype(np.float32)
    labels = table.column("label").to_numpy().astype(np.int64)
    extras: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        col = table.column(name).combine_chunks()
        if shape:
            values = col.flatten().to_numpy(zero_copy_only=False)
            extras[name] = values.reshape(len(labels), *shape)
        else:
            extras[name] = col.to_numpy()
    return JetSample(
        features,
        labels,
        extras,
        json.loads(md.get("meta", "{}")),
        names,
        tuple(json.loads(md["class_names"])),
    )


def default_sample_path() -> Path:
    """Path of the jet sample shipped inside the package."""
    return Path(str(resources.files("lightspeed.data").joinpath(DEFAULT_SAMPLE)))


def load_default_jets() -> JetSample:
    """The shipped default sample (made by ``lightspeed data jets``; see docs/data.md)."""
    path = default_sample_path()
    if not path.exists():
        raise InputError(
            f"the shipped jet sample is missing at '{path}': reinstall lightspeed, "
            "or make one with `lightspeed data jets --n 25000 -o jets.h5`"
        )
    return load_jets(path)


# ---------------------------------------------------------------------------- public hls4ml files

_HLS4ML_LABELS = tuple(f"j_{c}" for c in CLASSES)


def load_hls4ml(path: str | os.PathLike[str]) -> JetSample:
    """Read the public hls4ml LHC jet dataset from a local file.

    Accepted: the OpenML ``hls4ml_lhc_jets_hlf`` table as CSV or ARFF (16 feature
    columns and a ``class`` column with values g/q/w/z/t); the Zenodo 3602260
    HDF5 files (``jets`` matrix with ``jetFeatureNames``, constituents in
    ``jetConstituentList``); and the older HDF5 with the ``t_allpar_new`` table.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _hls4ml_table(*_read_csv(path), source=path)
    if suffix == ".arff":
        return _hls4ml_table(*_read_arff(path), source=path)
    import h5py

    with h5py.File(path, "r") as f:
        if "jets" in f and "jetFeatureNames" in f:
            names = [
                n.decode() if isinstance(n, bytes) else str(n) for n in f["jetFeatureNames"][()]
            ]
            jets = np.asarray(f["jets"][()], dtype=np.float64)
            cols = {n: jets[:, i] for i, n in enumerate(names)}
            extras: dict[str, np.ndarray] = {}
            if "jetConstituentList" in f and "particleFeatureNames" in f:
                extras["constituents"] = _zenodo_constituents(f)
            return _hls4ml_columns(cols, path, extras)
        if "t_allpar_new" in f:
            table = f["t_allpar_new"][()]
            cols = {n: np.asarray(table[n], dtype=np.float64) for n in table.dtype.names}
            return _hls4ml_columns(cols, path, {})
    raise InputError(
        f"'{path}' is neither a lightspeed jet file nor a known hls4ml jet file "
        "(expected datasets 'jets'+'jetFeatureNames' or 't_allpar_new')"
    )


def _zenodo_constituents(f: Any) -> np.ndarray:
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["particleFeatureNames"][()]]
    want = ("j1_pt", "j1_eta", "j1_phi")
    if not all(w in names for w in want):
        raise InputError(f"constituent features {want} not found in {names}")
    lst = f["jetConstituentList"]
    return np.stack([lst[:, :, names.index(w)] for w in want], axis=-1).astype(np.float32)


def _hls4ml_columns(
    cols: dict[str, np.ndarray], source: Path, extras: dict[str, np.ndarray]
) -> JetSample:
    missing = [n for n in (*FEATURES, *_HLS4ML_LABELS) if n not in cols]
    if missing:
        raise InputError(f"'{source}' lacks the hls4ml columns {missing}")
    features = np.stack([cols[n] for n in FEATURES], axis=1).astype(np.float32)
    onehot = np.stack([cols[n] for n in _HLS4ML_LABELS], axis=1)
    if not np.all(onehot.sum(axis=1) == 1):
        raise InputError(f"'{source}': label columns j_g..j_t are not one-hot")
    return JetSample(
        features, onehot.argmax(axis=1).astype(np.int64), extras, {"source": str(source)}
    )


def _hls4ml_table(names: list[str], rows: list[list[str]], source: Path) -> JetSample:
    missing = [n for n in (*FEATURES, "class") if n not in names]
    if missing:
        raise InputError(f"'{source}' lacks the hls4ml columns {missing}")
    idx = [names.index(n) for n in FEATURES]
    ci = names.index("class")
    features = np.array([[float(r[i]) for i in idx] for r in rows], dtype=np.float32)
    lookup = {c: k for k, c in enumerate(CLASSES)}
    try:
        labels = np.array(
            [lookup[r[ci].strip().strip("'\"").lower()] for r in rows], dtype=np.int64
        )
    except KeyError as exc:
        raise InputError(
            f"'{source}': unknown class value {exc}; expected one of {CLASSES}"
        ) from exc
    return JetSample(features, labels, {}, {"source": str(source)})


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    import csv

    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        names = [n.strip().strip('"') for n in next(reader)]
        return names, [r for r in reader if r]


def _read_arff(path: Path) -> tuple[list[str], list[list[str]]]:
    names: list[str] = []
    rows: list[list[str]] = []
    in_data = False
    with open(path) as fh:
        for line in fh:
            s = line.strip()
            if not s or s.startswith("%"):
                continue
            if in_data:
                rows.append(s.split(","))
            elif s.lower().startswith("@attribute"):
                names.append(s.split()[1].strip("'\""))
            elif s.lower().startswith("@data"):
                in_data = True
    return names, rows
