"""Launch real peer servers (NVIDIA Triton from the nvidia-pytriton wheel, MLServer).

Used by the side-by-side tests and ``benchmarks/serving.py``. Each peer lives
in its own virtual environment (their dependencies conflict with ours); the
default locations are ``/work/peers/triton`` and ``/work/peers/mlserver``,
overridable with ``LIGHTSPEED_TRITON_VENV`` / ``LIGHTSPEED_MLSERVER_VENV``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from lightspeed.errors import ToolMissingError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _venv(env: str, default: str) -> Path:
    return Path(os.environ.get(env, default))


def triton_paths(venv: Path | None = None) -> dict[str, Path]:
    """The tritonserver binary and its support files inside a pytriton venv."""
    venv = venv or _venv("LIGHTSPEED_TRITON_VENV", "/work/peers/triton")
    site = (
        venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )
    ts = site / "pytriton" / "tritonserver"
    paths = {
        "site": site,
        "binary": ts / "bin" / "tritonserver",
        "python_backend": ts / "backends" / "python",
        "stub": ts
        / "python_backend_stubs"
        / f"{sys.version_info.major}.{sys.version_info.minor}"
        / "triton_python_backend_stub",
        "libs": site / "nvidia_pytriton.libs",
    }
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise ToolMissingError(
            "NVIDIA Triton (nvidia-pytriton wheel) not found at "
            f"{missing[0]}: python3.11 -m venv {venv} && {venv}/bin/pip install nvidia-pytriton "
            "onnxruntime numpy"
        )
    return paths


def _wait_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"peer server exited early (code {proc.returncode}); see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"peer server did not open port {port} within {timeout} s; see {log}")


class PeerProcess:
    """A running peer server (context manager: always stopped on exit)."""

    def __init__(self, proc: subprocess.Popen, grpc_port: int, http_port: int, workdir: Path):
        self.proc = proc
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.workdir = workdir

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_triton(
    repo: Path, *, venv: Path | None = None, timeout: float = 90.0, require_ready: bool = True
) -> PeerProcess:
    """Start real ``tritonserver`` on ``repo`` (python backend only) on free ports.

    ``require_ready=False`` keeps it running when some model fails to load (for inspecting
    its repository index).
    """
    p = triton_paths(venv)
    work = Path(tempfile.mkdtemp(prefix="ls-triton-"))
    backends = work / "backends" / "python"
    backends.mkdir(parents=True)
    for f in p["python_backend"].iterdir():
        if f.is_file():
            shutil.copy2(f, backends / f.name)
    shutil.copy2(p["stub"], backends / "triton_python_backend_stub")
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        x for x in (libdir, str(p["libs"]), env.get("LD_LIBRARY_PATH", "")) if x
    )
    env["LIGHTSPEED_SITE_PACKAGES"] = str(p["site"])
    log = work / "tritonserver.log"
    cmd = [
        str(p["binary"]),
        f"--model-repository={repo}",
        f"--backend-directory={work / 'backends'}",
        f"--grpc-port={grpc_port}",
        f"--http-port={http_port}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=false",
        "--log-verbose=0",
    ]
    if not require_ready:
        cmd += ["--exit-on-error=false", "--strict-readiness=false"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_port(grpc_port, proc, timeout, log)
    _wait_ready_http(http_port, proc, timeout, log)
    return PeerProcess(proc, grpc_port, http_port, work)


def _wait_ready_http(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    import urllib.error
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"peer server exited early (code {proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"peer server on port {port} not ready within {timeout} s; see {log}")


def mlserver_bin(venv: Path | None = None) -> Path:
    venv = venv or _venv("LIGHTSPEED_MLSERVER_VENV", "/work/peers/mlserver")
    exe = venv / "bin" / "mlserver"
    if not exe.exists():
        raise ToolMissingError(
            f"MLServer not found at {exe}: python3.11 -m venv {venv} && {venv}/bin/pip install "
            "mlserver 'uvloop==0.21.0' onnxruntime"
        )
    return exe


_MLSERVER_RUNTIME = """
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, opts,
                                            providers=["CPUExecutionProvider"])
        self._out_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self.session.run(self._out_names, feed)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(n, r) for n, r in zip(self._out_names, results)],
        )
"""


def start_mlserver(
    models: list[tuple[str, Path, int, float]],
    *,
    venv: Path | None = None,
    timeout: float = 120.0,
) -> PeerProcess:
    """Start MLServer on free ports with an onnxruntime runtime per model.

    ``models``: (name, onnx path, max_batch_size, max_batch_time in s); a
    max_batch_size above 1 turns on MLServer's adaptive batching.
    """
    import json

    exe = mlserver_bin(venv)
    work = Path(tempfile.mkdtemp(prefix="ls-mlserver-"))
    (work / "runtime_onnx.py").write_text(_MLSERVER_RUNTIME)
    for name, onnx_path, max_batch_size, max_batch_time_s in models:
        mdir = work / name
        mdir.mkdir()
        shutil.copy2(onnx_path, mdir / "model.onnx")
        settings: dict = {
            "name": name,
            "implementation": "runtime_onnx.OnnxModel",
            "parameters": {"uri": str(mdir / "model.onnx")},
        }
        if max_batch_size > 1:
            settings["max_batch_size"] = max_batch_size
            settings["max_batch_time"] = max_batch_time_s
        (mdir / "model-settings.json").write_text(json.dumps(settings))
    grpc_port, http_port = free_port(), free_port()
    (work / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": free_port(),
                "parallel_workers": 0,
                "metrics_endpoint": None,
            }
        )
    )
    log = work / "mlserver.log"
    env = dict(os.environ, PYTHONPATH=str(work))
    proc = subprocess.Popen(
        [str(exe), "start", str(work)],
        cwd=work,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    _wait_port(grpc_port, proc, timeout, log)
    _wait_ready_http(http_port, proc, timeout, log)
    return PeerProcess(proc, grpc_port, http_port, work)
