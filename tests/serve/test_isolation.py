"""One client's bad data never fails another's; variable-size requests batch by shape.

Driven over loopback by the real tritonclient against the emulator backend with
dynamic batching (issue: a NaN from one client used to fail its whole batch).
"""

from __future__ import annotations

import threading
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import lightspeed
from lightspeed.serve.repo_add import EntryOptions, add_model
from lightspeed.serve.server import BackgroundServer, ServerConfig


@pytest.fixture(scope="module")
def emu(tmp_path_factory, mlp_onnx):
    root = tmp_path_factory.mktemp("iso")
    rng = np.random.default_rng(3)
    calib = rng.normal(size=(400, 16)).astype(np.float32)
    q = lightspeed.quantize(lightspeed.load(str(mlp_onnx)), precision="auto", calibration=calib)
    q.save(root / "compiled")
    repo = root / "repo"
    # a long queue delay so the concurrent requests really share batches
    add_model(
        root / "compiled", repo, "emu", EntryOptions(max_batch_size=8, max_queue_delay_us=3000)
    )
    return q, repo


def _particles(core):
    """A per-particle model: input [batch, n_particles, 4], n differs per event."""
    core.add_python_model(
        "particles",
        lambda d: {"s": d["p"].sum(axis=1)},
        [("p", "FP32", [-1, 4])],
        [("s", "FP32", [4])],
        max_batch_size=8,
        dynamic_batching={"max_queue_delay_microseconds": 3000},
    )


@pytest.fixture(scope="module")
def server(emu):
    _, repo = emu
    cfg = ServerConfig(repository=repo, grpc_port=0, http_port=0, metrics_port=0)
    with BackgroundServer(cfg, setup=_particles) as srv:
        yield srv


def _infer(url, x, name="x"):
    c = grpcclient.InferenceServerClient(url)
    try:
        i = grpcclient.InferInput(name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        return c.infer("emu", [i], request_id="r")
    finally:
        c.close()


def test_nan_client_fails_alone(server, emu, caplog):
    q, _ = emu
    rng = np.random.default_rng(7)
    xs = rng.normal(size=(8, 10, 1, 16)).astype(np.float32)  # 8 clients x 10 requests
    results: dict[tuple[int, int], object] = {}

    def client(k):
        c = grpcclient.InferenceServerClient(server.grpc_url)
        for j in range(10):
            x = xs[k, j].copy()
            if k == 3:
                x[0, 5] = np.nan
            i = grpcclient.InferInput(q.input_names[0], list(x.shape), "FP32")
            i.set_data_from_numpy(x)
            try:
                results[k, j] = c.infer("emu", [i], request_id=f"c{k}-{j}").as_numpy(
                    q.output_names[0]
                )
            except InferenceServerException as exc:
                results[k, j] = exc
        c.close()

    with caplog.at_level("WARNING", logger="lightspeed.serve"):
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for (k, j), r in results.items():
        if k == 3:
            assert isinstance(r, InferenceServerException), r
            assert "INVALID_ARGUMENT" in str(r.status()) and "NaN" in r.message()
        else:
            assert isinstance(r, np.ndarray), f"client {k} request {j} failed: {r}"
            np.testing.assert_array_equal(r, q.predict(xs[k, j]))
    assert len(results) == 80
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert {r.fields["request_id"] for r in failed} == {f"c3-{j}" for j in range(10)}
    with urllib.request.urlopen(server.metrics_url) as resp:
        metrics = resp.read().decode()
    line = 'lightspeed_inference_request_failure{model="emu",version="1",reason="INVALID_ARGUMENT"}'
    assert f"{line} 10" in metrics


def test_nan_over_http_is_400(server, emu):
    q, _ = emu
    c = httpclient.InferenceServerClient(server.http_url)
    x = np.full((1, 16), np.inf, np.float32)
    i = httpclient.InferInput(q.input_names[0], [1, 16], "FP32")
    i.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as err:
        c.infer("emu", [i])
    c.close()
    assert err.value.status() == "400" and "NaN or Inf" in err.value.message()


def test_mixed_particle_counts_all_succeed(server):
    counts = [3, 5, 3, 7, 5, 3, 7, 7, 3, 11, 2, 5] * 2
    out: dict[int, object] = {}

    def client(i, n):
        c = grpcclient.InferenceServerClient(server.grpc_url)
        p = np.full((1, n, 4), float(i), np.float32)
        inp = grpcclient.InferInput("p", [1, n, 4], "FP32")
        inp.set_data_from_numpy(p)
        try:
            out[i] = c.infer("particles", [inp]).as_numpy("s")
        except InferenceServerException as exc:
            out[i] = exc
        c.close()

    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(counts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, n in enumerate(counts):
        assert isinstance(out[i], np.ndarray), f"request {i} ({n} particles) failed: {out[i]}"
        np.testing.assert_array_equal(out[i], np.full((1, 4), float(i) * n))
