"""``lightspeed serve --workers N``: several processes on one port, and what they refuse."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from lightspeed.cli import main as cli_main
from tests.serve.serve_helpers import mlp_numpy

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="--workers needs Linux fork")

_STARTED = re.compile(r"server started.*grpc_port=(\d+) http_port=(\d+) metrics_port=(\S+)")


@pytest.fixture(scope="module")
def workers(repo):
    cmd = [
        sys.executable,
        "-m",
        "lightspeed.cli",
        "serve",
        str(repo),
        "--workers",
        "2",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--metrics-port",
        "0",
        "--drain-timeout",
        "5",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    found: dict = {}
    started = threading.Event()

    def pump():
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = _STARTED.search(line)
            if m:
                found["ports"] = m.groups()
                started.set()

    threading.Thread(target=pump, daemon=True).start()
    if not started.wait(120):
        proc.kill()
        pytest.fail("--workers 2 did not start:\n" + "".join(lines[-20:]))
    grpc_port, http_port, metrics = found["ports"]
    yield proc, int(grpc_port), int(http_port), metrics.split(","), lines
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_two_workers_answer_on_one_port(workers):
    proc, grpc_port, http_port, metrics, _ = workers
    assert len(_children(proc.pid)) == 2
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    # separate clients on separate connections; the kernel spreads them over the workers
    for _ in range(4):
        c = grpcclient.InferenceServerClient(
            f"127.0.0.1:{grpc_port}", channel_args=[("grpc.use_local_subchannel_pool", 1)]
        )
        inp = grpcclient.InferInput("x", [3, 16], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_allclose(
            c.infer("mlp", [inp]).as_numpy("y"), mlp_numpy(x), rtol=1e-5, atol=1e-6
        )
        c.close()
    h = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    inp = httpclient.InferInput("x", [3, 16], "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_allclose(
        h.infer("mlp", [inp]).as_numpy("y"), mlp_numpy(x), rtol=1e-5, atol=1e-6
    )
    # one metrics endpoint per worker
    assert len(metrics) == 2 and len(set(metrics)) == 2
    for port in metrics:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        assert b'nv_inference_request_success{model="mlp",version="1"}' in text


def test_repository_changes_and_shm_are_refused(workers):
    _, grpc_port, http_port, _, _ = workers
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    for call in (lambda: c.load_model("mlp"), lambda: c.unload_model("mlp")):
        with pytest.raises(InferenceServerException) as info:
            call()
        assert info.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert "--workers 1" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        c.register_system_shared_memory("r", "/ls_test_none", 64)
    assert "--workers 1" in info.value.message()
    h = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    with pytest.raises(InferenceServerException) as info:
        h.load_model("mlp")
    assert "--workers 1" in str(info.value)
    assert c.is_model_ready("mlp")  # nothing was unloaded


def test_sigterm_stops_every_worker(workers):
    proc, _, _, _, lines = workers
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    time.sleep(0.2)
    for pid in kids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
    assert any('msg="server stopped" workers=2' in line for line in lines)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_explicit_model_control_needs_one_worker(repo, capsys):
    code = cli_main(["serve", str(repo), "--workers", "2", "--model-control", "explicit"])
    assert code == 2
    assert "--workers 1" in capsys.readouterr().err


def test_a_port_in_use_is_refused(repo, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli_main(["serve", str(repo), "--workers", "2", "--grpc-port", str(port)])
    assert code == 2
    assert f"cannot bind 127.0.0.1:{port}" in capsys.readouterr().err
