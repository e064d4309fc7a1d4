"""File helpers shared by every layer: atomic directory/file writes and array files.

Low level on purpose: it imports only the standard library and
:mod:`lightspeed.errors` (numpy lazily, in the array helpers), so any module of
the package may use it.

Atomic writes build the result under a temporary name next to the destination
and rename it into place, so readers never see a half-written model, firmware
directory or file. :mod:`tempfile` creates those temporaries private (``0700``
directories, ``0600`` files); the helpers give the published result the
permissions a plain ``mkdir``/``open`` would have had under the process umask,
so colleagues sharing a file system can read what was written.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightspeed.errors import InputError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc).

    Elsewhere it falls back to setting and restoring it under a lock; that is brief,
    but a thread creating files at that instant outside this module could see umask 0."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o022)
        os.umask(old)
    return old


def default_mode(directory: bool = False) -> int:
    """The mode ``mkdir`` (``directory``) or ``open`` gives a new entry under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Build a directory under a temporary name, then publish it as ``path``.

    Yields the temporary directory (a sibling of ``path``, so the final rename stays on
    one file system). On success it gets ``mkdir``'s permissions under the umask and
    takes ``path``'s place: ``replace=True`` swaps out an existing ``path`` (the old
    one is moved aside first, then deleted), ``replace=False`` keeps an existing
    ``path`` and discards the new copy (a content-addressed cache entry someone else
    finished first). On any exception the temporary is removed and ``path`` is
    untouched. Returns nothing; the published directory is ``path``.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, default_mode(directory=True))
        _publish_dir(tmp, final, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish_dir(tmp: Path, final: Path, replace: bool) -> None:
    try:
        os.rename(tmp, final)  # fails when final exists and is not an empty directory
        return
    except OSError:
        if not final.exists():
            raise
    if not replace:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = tmp.with_name(tmp.name + ".old")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Write a file under a temporary name, then rename it onto ``path``.

    Yields the temporary path (an empty file next to ``path``; open it for writing or
    hand it to a library's save function). On success it gets the permissions ``open``
    would leave: those of the file it replaces, else ``0o666`` minus the umask. On any
    exception the temporary is removed and ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        try:
            mode = stat.S_IMODE(os.stat(final).st_mode)
        except OSError:
            mode = default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_file`)."""
    return atomic_write_bytes(path, text.encode())


# ---------------------------------------------------------------------------
# array files (.npy / .npz) keyed by tensor name


def load_array_file(path: str | os.PathLike[str], names: list[str], what: str) -> dict[str, Any]:
    """Read ``.npy`` (one tensor) or ``.npz`` (keyed by name) into {name: array}.

    ``what`` names the file in error messages ("input", "calibration", ...)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {p} does not exist")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{what} file {p} is not a readable .npy/.npz file ({exc})") from None
    if isinstance(data, np.ndarray):
        if len(names) != 1:
            raise InputError(
                f"model has inputs {names}; give an .npz keyed by input name for {what}"
            )
        return {names[0]: data}
    with data:
        keys = list(data.files)
        if len(names) == 1 and len(keys) == 1:
            return {names[0]: data[keys[0]]}
        missing = [n for n in names if n not in keys]
        if missing:
            raise InputError(f"{what} file {p} lacks arrays for inputs {missing} (has {keys})")
        return {n: data[n] for n in names}


def save_array_file(path: str | os.PathLike[str], arrays: dict[str, Any]) -> Path:
    """Write {name: array} to ``.npz`` (keyed by name) or, for one array, ``.npy`` (atomically).

    As with :func:`numpy.save`, a single array goes to ``path`` + ``.npy`` when ``path``
    has neither suffix; returns the path written."""
    import numpy as np

    p = Path(path)
    if p.suffix != ".npz":
        if len(arrays) != 1:
            raise InputError(f"model has outputs {list(arrays)}; write them to an .npz file")
        if p.suffix != ".npy":
            p = p.with_name(p.name + ".npy")
    with atomic_file(p) as tmp, open(tmp, "wb") as fh:
        if p.suffix == ".npz":
            np.savez(fh, **arrays)
        else:
            np.save(fh, next(iter(arrays.values())))
    return p


__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "default_mode",
    "load_array_file",
    "save_array_file",
]
