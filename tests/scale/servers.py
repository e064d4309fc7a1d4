"""Start/stop real `lightspeed serve` processes on loopback for scale-out tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(addr: str, timeout: float = 30.0) -> None:
    import tritonclient.grpc as grpcclient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            c = grpcclient.InferenceServerClient(addr)
            if c.is_server_ready():
                c.close()
                return
        time.sleep(0.2)
    raise TimeoutError(f"server at {addr} did not become ready in {timeout} s")


@contextlib.contextmanager
def serve(repo: Path, n: int = 1):
    """Yield a list of (address, Popen) for n servers of ``repo``; always stops them."""
    procs = []
    try:
        for _ in range(n):
            port = free_port()
            cmd = [sys.executable, "-m", "lightspeed.cli", "serve", str(repo), "--grpc-port", str(port),
                   "--http-port", "-1", "--metrics-port", "-1", "--log-level", "WARNING"]  # fmt: skip
            procs.append((f"127.0.0.1:{port}", subprocess.Popen(cmd)))
        for addr, _ in procs:
            wait_ready(addr)
        yield procs
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.terminate()
        for _, p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
