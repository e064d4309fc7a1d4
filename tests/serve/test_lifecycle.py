"""Floods, timeouts, disconnects, runtime load/unload and graceful shutdown."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from lightspeed.serve.server import BackgroundServer, ServerConfig
from tests.serve.conftest import add_python_models
from tests.serve.serve_helpers import mlp_numpy


def _input(x, module=grpcclient, name="x"):
    i = module.InferInput(name, list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    return i


def _server(repo=None, **kw):
    config = ServerConfig(
        repository=repo, grpc_port=0, http_port=0, metrics_port=-1, drain_timeout_s=10, **kw
    )
    return BackgroundServer(config, setup=add_python_models)


def test_flood_beyond_queue_bound_is_resource_exhausted(server):
    async def run():
        async with grpcaio.InferenceServerClient(server.grpc_url) as c:
            x = np.ones((1, 4), np.float32)
            slow = [c.infer("slow", [_input(x, grpcaio)]) for _ in range(16)]
            # another model is unaffected while "slow" is flooded
            fast = c.infer("double", [_input(x, grpcaio)])
            return await asyncio.gather(*slow, return_exceptions=True), await fast

    slow, fast = asyncio.run(run())
    np.testing.assert_array_equal(fast.as_numpy("y"), 2 * np.ones((1, 4)))
    rejected = [r for r in slow if isinstance(r, InferenceServerException)]
    ok = [r for r in slow if not isinstance(r, Exception)]
    assert rejected and ok
    assert all(r.status() == "StatusCode.RESOURCE_EXHAUSTED" for r in rejected)
    assert all("queue is full" in r.message() for r in rejected)
    for r in ok:
        np.testing.assert_array_equal(r.as_numpy("y"), 2 * np.ones((1, 4)))


def test_flood_over_http_is_503(server):
    import tritonclient.http.aio as httpaio

    async def run():
        c = httpaio.InferenceServerClient(server.http_url, conn_limit=32)
        try:
            x = np.ones((1, 4), np.float32)
            inputs = []
            for _ in range(16):
                i = httpaio.InferInput("x", [1, 4], "FP32")
                i.set_data_from_numpy(x)
                inputs.append(i)
            return await asyncio.gather(
                *(c.infer("slow", [i]) for i in inputs), return_exceptions=True
            )
        finally:
            await c.close()

    results = asyncio.run(run())
    rejected = [r for r in results if isinstance(r, InferenceServerException)]
    assert rejected and all(r.status() == "503" for r in rejected)
    assert any(not isinstance(r, Exception) for r in results)


def test_queue_timeout_parameter(server):
    async def run():
        async with grpcaio.InferenceServerClient(server.grpc_url) as c:
            x = np.ones((4, 4), np.float32)  # a full batch keeps the one instance busy
            first = asyncio.ensure_future(c.infer("slow", [_input(x, grpcaio)]))
            await asyncio.sleep(0.05)
            late = c.infer("slow", [_input(x, grpcaio)], timeout=50_000)  # microseconds
            return await asyncio.gather(first, late, return_exceptions=True)

    first, late = asyncio.run(run())
    assert not isinstance(first, Exception)
    assert isinstance(late, InferenceServerException)
    assert late.status() == "StatusCode.DEADLINE_EXCEEDED" and "timed out" in late.message()


def test_client_disconnect_mid_request(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    x = np.ones((1, 4), np.float32)
    with pytest.raises(InferenceServerException) as info:
        c.infer("slow", [_input(x)], client_timeout=0.05)
    assert "Deadline" in info.value.message() or "DEADLINE" in str(info.value.status())
    # an HTTP client that sends half a request and hangs up
    host, port = server.http_url.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
        )
    time.sleep(0.4)  # let the cancelled request reach the head of the queue
    np.testing.assert_array_equal(c.infer("slow", [_input(x)]).as_numpy("y"), 2 * x)
    assert c.is_server_live()
    c.close()


@pytest.mark.parametrize("frontend", ["h2", "grpcio"])
def test_graceful_shutdown_answers_queued_requests(repo, frontend):
    results: list = []
    srv = _server(grpc_frontend=frontend)
    srv.start()
    url = srv.grpc_url

    def call(i):
        c = grpcclient.InferenceServerClient(url)
        x = np.full((1, 4), i, np.float32)
        try:
            results.append((i, c.infer("slow", [_input(x)]).as_numpy("y")))
        except Exception as exc:  # recorded and asserted on below
            results.append((i, exc))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.15)  # all three accepted: one running, two queued
    srv.stop()
    for t in threads:
        t.join(20)
    assert len(results) == 3
    for i, y in results:
        assert not isinstance(y, Exception), y
        np.testing.assert_array_equal(y, np.full((1, 4), 2 * i, np.float32))
    with pytest.raises(InferenceServerException):
        grpcclient.InferenceServerClient(url).is_server_live()


def test_load_unload_at_runtime_keeps_in_flight_requests(tmp_path, mlp_onnx):
    from lightspeed.serve.repo_add import EntryOptions, add_model

    repo = tmp_path / "repo"
    add_model(mlp_onnx, repo, "mlp", EntryOptions(max_batch_size=8))
    errors: list = []
    stop = threading.Event()
    x = np.random.default_rng(1).normal(size=(2, 16)).astype(np.float32)

    with _server(repo) as srv:

        def traffic():
            c = grpcclient.InferenceServerClient(srv.grpc_url)
            while not stop.is_set():
                try:
                    y = c.infer("mlp", [_input(x)]).as_numpy("y")
                    np.testing.assert_allclose(y, mlp_numpy(x), rtol=1e-5, atol=1e-6)
                except Exception as exc:
                    errors.append(exc)

        t = threading.Thread(target=traffic)
        t.start()
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        for _ in range(3):
            c.load_model("mlp")  # reload while requests flow
        time.sleep(0.1)
        stop.set()
        t.join(20)
        assert errors == []

        # unload with requests queued on a slow model: all of them are answered
        async def slow_then_unload():
            async with grpcaio.InferenceServerClient(srv.grpc_url) as ac:
                xs = np.ones((1, 4), np.float32)
                calls = [
                    asyncio.ensure_future(ac.infer("slow", [_input(xs, grpcaio)])) for _ in range(3)
                ]
                await asyncio.sleep(0.1)
                await ac.unload_model("mlp")
                return await asyncio.gather(*calls, return_exceptions=True)

        assert all(not isinstance(r, Exception) for r in asyncio.run(slow_then_unload()))
        assert not c.is_model_ready("mlp")
        with pytest.raises(InferenceServerException) as info:
            c.infer("mlp", [_input(x)])
        assert info.value.status() == "StatusCode.UNAVAILABLE"

        # a broken config loaded at runtime is reported and leaves the server up
        (repo / "mlp" / "config.pbtxt").write_text("max_batch_size: -")
        with pytest.raises(InferenceServerException) as info:
            c.load_model("mlp")
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "malformed config.pbtxt" in info.value.message()
        # a new version appears and loads
        add_model(mlp_onnx, tmp_path / "fresh", "mlp", EntryOptions(max_batch_size=8))
        shutil.copy(tmp_path / "fresh" / "mlp" / "config.pbtxt", repo / "mlp" / "config.pbtxt")
        shutil.copytree(repo / "mlp" / "1", repo / "mlp" / "2")
        c.load_model("mlp")
        assert c.is_model_ready("mlp", "2") and not c.is_model_ready("mlp", "1")
        assert c.infer("mlp", [_input(x)]).get_response().model_version == "2"
        c.close()


def test_explicit_model_control(repo):
    srv = BackgroundServer(
        ServerConfig(repository=repo, grpc_port=0, http_port=-1, metrics_port=-1, load_all=False)
    )
    with srv:
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        assert not c.is_model_ready("mlp")
        c.load_model("mlp")
        assert c.is_model_ready("mlp")
        c.close()


@pytest.mark.parametrize("frontend", ["h2", "grpcio"])
def test_thousands_of_concurrent_calls_are_all_answered(frontend):
    """2,000 batch-1 unary calls in flight at once: every one gets its answer.

    gRPC core used to drop calls that waited for the grpc.aio accept loop once more
    than 1,000 were parked, as a bare CANCELLED the server never saw."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    n = 2000
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 4)
    payloads = []
    for i in range(n):
        req = pb.ModelInferRequest(model_name="double", id=str(i))
        req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        req.raw_input_contents.append(x[i].tobytes())
        payloads.append(req.SerializeToString())

    async def run(url):
        async with grpc.aio.insecure_channel(url) as channel:
            call = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            return await asyncio.wait_for(
                asyncio.gather(*(call(p) for p in payloads), return_exceptions=True), 60
            )

    with _server(grpc_frontend=frontend) as srv:
        results = asyncio.run(run(srv.grpc_url))
        stats = grpcclient.InferenceServerClient(srv.grpc_url).get_inference_statistics("double")
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {n} calls failed, e.g. {errors[0]!r}"
    for i, r in enumerate(results):
        assert r.id == str(i)
        got = np.frombuffer(r.raw_output_contents[0], np.float32).reshape(1, 4)
        np.testing.assert_array_equal(got, 2 * x[i])
    assert stats.model_stats[0].inference_stats.success.count == n


def test_the_serve_process_keeps_freed_memory():
    """`lightspeed serve` asks glibc to keep freed memory (no page faults through every
    large request); elsewhere the call says it could not."""
    import platform
    import subprocess
    import sys

    code = "from lightspeed.serve.server import keep_freed_memory as k; print(k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = platform.libc_ver()[0] == "glibc"
    assert out.stdout.strip() == str(expected)
