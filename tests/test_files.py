"""lightspeed.files: atomic writes that end with the permissions mkdir/open give under the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from lightspeed.errors import InputError
from lightspeed.files import (
    atomic_dir,
    atomic_file,
    atomic_write_text,
    current_umask,
    load_array_file,
    save_array_file,
)
from lightspeed.quantize import quantize
from tests.conftest import make_mlp


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    old = os.umask(0o022)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    try:
        yield set_umask
    finally:
        os.umask(old)


@pytest.fixture
def small_q():
    rng = np.random.default_rng(0)
    return quantize(make_mlp(sizes=(4, 6, 3)), "auto", calibration=rng.normal(0, 1, (64, 4)))


def _assert_tree_readable(root: Path) -> None:
    """Every directory 0o755 and every file 0o644 (umask 0022), the top included."""
    assert _mode(root) == 0o755, oct(_mode(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            assert _mode(Path(dirpath, d)) == 0o755, (d, oct(_mode(Path(dirpath, d))))
        for f in filenames:
            assert _mode(Path(dirpath, f)) == 0o644, (f, oct(_mode(Path(dirpath, f))))


def test_current_umask_reads_without_changing(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027


def test_compiled_model_dir_is_group_and_other_readable(umask, small_q, tmp_path):
    out = small_q.save(tmp_path / "model")
    _assert_tree_readable(out)
    # replacing an existing compiled model keeps the permissions too
    out = small_q.save(tmp_path / "model")
    _assert_tree_readable(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_firmware_dir_is_group_and_other_readable(umask, small_q, tmp_path):
    from lightspeed.firmware import generate

    fw = generate(small_q, tmp_path / "fw", target="verilog")
    _assert_tree_readable(Path(fw.path))


def test_qonnx_export_is_group_and_other_readable(umask, small_q, tmp_path):
    from lightspeed.frontends.qonnx_export import export_qonnx

    path = export_qonnx(small_q, tmp_path / "sub" / "m.onnx")
    assert _mode(path) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]


def test_stricter_umask_is_respected(umask, small_q, tmp_path):
    umask(0o077)
    out = small_q.save(tmp_path / "model")
    assert _mode(out) == 0o700
    assert _mode(out / "manifest.json") == 0o600


def test_atomic_dir_replace_and_keep(umask, tmp_path):
    dest = tmp_path / "d"
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(dest) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    with atomic_dir(dest, replace=False) as tmp:  # a cache entry someone else finished
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_atomic_dir_failure_leaves_destination(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "keep").write_text("x")
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "half").write_text("y")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert sorted(p.name for p in dest.iterdir()) == ["keep"]


def test_atomic_file_modes_and_failure(umask, tmp_path):
    p = atomic_write_text(tmp_path / "f.txt", "hello")
    assert p.read_text() == "hello" and _mode(p) == 0o644
    os.chmod(p, 0o640)
    atomic_write_text(p, "again")  # like open(): an existing file keeps its mode
    assert p.read_text() == "again" and _mode(p) == 0o640
    with pytest.raises(RuntimeError), atomic_file(p) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert p.read_text() == "again"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]


def test_array_files_round_trip(umask, tmp_path):
    x = np.arange(6.0).reshape(2, 3)
    p = save_array_file(tmp_path / "y.npy", {"y": x})
    assert _mode(p) == 0o644
    assert np.array_equal(load_array_file(p, ["y"], "input")["y"], x)
    assert save_array_file(tmp_path / "z", {"y": x}) == tmp_path / "z.npy"  # as numpy.save
    p = save_array_file(tmp_path / "two.npz", {"a": x, "b": x + 1})
    got = load_array_file(p, ["a", "b"], "input")
    assert np.array_equal(got["b"], x + 1)
    with pytest.raises(InputError, match="npz"):
        save_array_file(tmp_path / "two.npy", {"a": x, "b": x})
    with pytest.raises(InputError, match="lacks arrays"):
        load_array_file(p, ["a", "c"], "input")
