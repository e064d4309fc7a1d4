"""Boosted-jet generation with Pythia8 + FastJet: parallel, reproducible, resumable.

The work is cut into chunks (class, index), each with its own Pythia seed
derived from the user's seed, so the result does not depend on the number of
workers or the order chunks finish in. Every finished chunk is saved
atomically as ``OUT.parts/<class>_<index>.npz``; an interrupted run is resumed
by running the same command again, and the output file is only written (temp
file + rename) once every chunk is there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data._physics import PhysicsConfig, pythia_settings
from lightspeed.data.io import JetSample, save_jets
from lightspeed.data.schema import CLASSES
from lightspeed.errors import InputError, ToolMissingError
from lightspeed.files import atomic_file, atomic_write_text

__all__ = ["JetGenConfig", "PhysicsConfig", "generate_jets", "pythia_settings", "require_generator"]

_INSTALL = "pip install 'pythia8mc==8.317.2' fastjet awkward   (or: pip install 'lightspeed[data]')"


@dataclass(frozen=True)
class JetGenConfig:
    """A generation run: how many jets, which classes, the seed and the physics settings."""

    n_jets: int
    seed: int = 1
    classes: tuple[str, ...] = CLASSES
    chunk_size: int = 500
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)

    def __post_init__(self) -> None:
        bad = [c for c in self.classes if c not in CLASSES]
        if bad or not self.classes:
            raise InputError(f"unknown jet classes {bad}: choose from {', '.join(CLASSES)}")
        if self.n_jets < len(self.classes):
            raise InputError(f"--n {self.n_jets} is too small: need at least one jet per class")
        if self.chunk_size < 1:
            raise InputError("chunk size must be at least 1")

    def chunks(self) -> list[tuple[str, int, int]]:
        """(class, chunk index, jets in chunk); classes balanced, remainder to the first ones."""
        out = []
        per, extra = divmod(self.n_jets, len(self.classes))
        for k, cls in enumerate(self.classes):
            n_cls = per + (1 if k < extra else 0)
            for i in range(math.ceil(n_cls / self.chunk_size)):
                out.append((cls, i, min(self.chunk_size, n_cls - i * self.chunk_size)))
        return out

    def chunk_seed(self, cls: str, index: int) -> int:
        """Pythia seed (1..900000000) of one chunk, derived from the run seed."""
        state = np.random.SeedSequence(self.seed, spawn_key=(CLASSES.index(cls), index))
        return int(state.generate_state(1)[0]) % 900_000_000 + 1

    def to_json(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}


def require_generator() -> None:
    """Raise ToolMissingError with the install command when Pythia8/FastJet/awkward are missing."""
    for module in ("pythia8mc", "fastjet", "awkward"):
        try:
            __import__(module)
        except ImportError as exc:
            raise ToolMissingError(f"jet generation needs '{module}': {_INSTALL}") from exc


def _quiet_worker() -> None:
    # Pythia and FastJet print banners from C++; keep the progress display clean.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    # Ctrl-C is handled by the parent: it cancels the queued chunks and lets the running
    # ones finish and save, so no work in flight is half-written or lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_chunk(cls: str, n: int, seed: int, physics: PhysicsConfig, part: str) -> tuple[str, int]:
    from lightspeed.data._physics import generate_chunk

    arrays = generate_chunk(cls, n, seed, physics)
    with atomic_file(part, suffix=".tmp.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return part, n


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _check_manifest(parts: Path, config: JetGenConfig) -> None:
    manifest = parts / "manifest.json"
    want = config.to_json()
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if have != want:
            raise InputError(
                f"'{parts}' holds a run with other settings; rerun with the same options "
                f"to resume, or delete '{parts}' to start over"
            )
    else:
        atomic_write_text(manifest, json.dumps(want, indent=1))


def generate_jets(
    out: str | os.PathLike[str],
    config: JetGenConfig,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Generate ``config.n_jets`` labelled jets into ``out`` (.h5 or .parquet); returns its path.

    ``workers`` processes run chunks in parallel (0: in this process). Interrupt
    with Ctrl-C at any time and run again with the same arguments to resume.
    """
    require_generator()
    out = Path(out)
    if out.suffix.lower() not in (".h5", ".hdf5", ".parquet"):
        raise InputError(f"output '{out}' must end in .h5, .hdf5 or .parquet")
    if out.exists() and not overwrite:
        raise InputError(f"'{out}' exists: pass overwrite=True (--overwrite) to replace it")
    parts = _parts_dir(out)
    _check_manifest(parts, config)
    todo = []
    done_jets = 0
    for cls, idx, n in config.chunks():
        part = parts / f"{cls}_{idx:05d}.npz"
        if part.exists():
            done_jets += n
        else:
            todo.append((cls, n, config.chunk_seed(cls, idx), config.physics, str(part)))

    bar = _Progress(progress, config.n_jets, done_jets)
    try:
        with bar:
            if workers <= 0:
                for task in todo:
                    bar.advance(_run_chunk(*task)[1])
            else:
                ctx = get_context("spawn")
                with ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=_quiet_worker
                ) as pool:
                    pending = {pool.submit(_run_chunk, *task) for task in todo}
                    try:
                        while pending:
                            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for fut in finished:
                                bar.advance(fut.result()[1])
                    except KeyboardInterrupt:
                        print("interrupted: saving the chunks in progress, then stopping ...")
                        for fut in pending:
                            fut.cancel()
                        raise
    except KeyboardInterrupt:
        print(f"stopped: finished chunks are kept in '{parts}'; rerun the same command to resume")
        raise
    sample = _assemble(parts, config)
    save_jets(sample, out)
    shutil.rmtree(parts)
    return out


def _assemble(parts: Path, config: JetGenConfig) -> JetSample:
    """Join the chunks in (class, index) order and shuffle with the run seed: worker-independent."""
    arrays: dict[str, list[np.ndarray]] = {}
    n_events: dict[str, int] = {}
    for cls, idx, _ in config.chunks():
        with np.load(parts / f"{cls}_{idx:05d}.npz") as z:
            for k in z.files:
                if k == "n_events":
                    n_events[cls] = n_events.get(cls, 0) + int(z[k])
                else:
                    arrays.setdefault(k, []).append(z[k])
    joined = {k: np.concatenate(v) for k, v in arrays.items()}
    perm = np.random.default_rng(config.seed).permutation(len(joined["labels"]))
    joined = {k: v[perm] for k, v in joined.items()}
    features = joined.pop("features")
    labels = joined.pop("labels").astype(np.int64)
    meta = {
        "generator": "lightspeed.data.jets",
        "config": config.to_json(),
        "pythia_settings": {c: pythia_settings(c, config.physics, 0)[:-3] for c in config.classes},
        "events_generated": n_events,
        "versions": _versions(),
    }
    return JetSample(features, labels, joined, meta)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pythia8mc", "fastjet", "awkward"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


class _Progress:
    """A rich progress bar over jets, or nothing when disabled."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self._bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task("jets", total=total, completed=done)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)


def class_names(classes: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of class names (used by the CLI)."""
    bad = [c for c in classes if c not in CLASSES]
    if bad:
        raise InputError(f"unknown jet classes {bad}: choose from {', '.join(CLASSES)}")
    return tuple(classes)
