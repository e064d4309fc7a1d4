"""SonicClient: per-event batching, splitting, retries, endpoint choice and local fallback."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lightspeed.client import InferenceError, SonicClient
from lightspeed.serve.peers import free_port
from lightspeed.serve.server import BackgroundServer, ServerConfig
from tests.serve.conftest import add_python_models
from tests.serve.serve_helpers import mlp_numpy


def _events(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(k), 16)).astype(np.float32) for k in rng.integers(1, 20, n)]


def run(coro):
    return asyncio.run(coro)


def test_event_loop_offload_matches_reference(client_server):
    events = _events()

    async def main():
        async with SonicClient(client_server.grpc_url, "mlp") as c:
            assert c.spec.max_batch_size == 8 and c.spec.inputs == {"x": ("FP32", (16,))}
            outs = await c.infer_events(events)
            return outs, c.stats

    outs, stats = run(main())
    for ev, out in zip(events, outs, strict=True):
        np.testing.assert_allclose(out["y"], mlp_numpy(ev), rtol=1e-5, atol=1e-6)
    assert stats.events == stats.remote_events == len(events)
    # events larger than max_batch_size (8) were split into several requests
    assert stats.requests == sum(-(-len(e) // 8) for e in events)
    assert stats.fallback_events == 0


def test_empty_event_needs_no_request(client_server):
    async def main():
        async with SonicClient(client_server.grpc_url, "mlp") as c:
            out = await c.infer_event(np.zeros((0, 16), np.float32))
            return out, c.stats.requests

    out, requests = run(main())
    assert out["y"].shape == (0, 5) and requests == 0


def test_bad_input_is_not_retried_nor_sent_to_fallback(client_server, client_onnx):
    async def main():
        async with SonicClient(client_server.grpc_url, "mlp", fallback=client_onnx) as c:
            with pytest.raises(InferenceError) as info:
                await c.infer_event(np.zeros((2, 15), np.float32))
            return info.value, c.stats

    err, stats = run(main())
    assert err.code == "INVALID_ARGUMENT" and "expected [-1, 16]" in str(err)
    assert stats.retries == 0 and stats.fallback_events == 0 and stats.failures == 1


def test_unknown_model_fails_at_connect(client_server):
    async def main():
        async with SonicClient(client_server.grpc_url, "nope", retries=0):
            pass

    with pytest.raises(InferenceError) as info:
        run(main())
    assert "no server answered ModelConfig" in str(info.value)


def test_unreachable_server_uses_local_fallback(client_onnx):
    dead = f"127.0.0.1:{free_port()}"
    ev = _events(3)

    async def main():
        c = SonicClient(dead, "mlp", fallback=client_onnx, timeout_s=1.0, retries=1)
        async with c:
            outs = await c.infer_events(ev)
            return outs, c.stats

    outs, stats = run(main())
    for e, o in zip(ev, outs, strict=True):
        np.testing.assert_allclose(o["y"], mlp_numpy(e), rtol=1e-5, atol=1e-6)
    assert stats.fallback_events == 3 and stats.remote_events == 0


def test_unreachable_without_fallback_is_an_error():
    async def main():
        async with SonicClient(f"127.0.0.1:{free_port()}", "mlp", timeout_s=1.0):
            pass

    with pytest.raises(InferenceError) as info:
        run(main())
    assert info.value.code == "UNAVAILABLE" and "fallback=" in str(info.value)


@pytest.mark.parametrize("streaming, n_events, seed", [(False, 4, 2), (True, 3, 6)])
def test_server_going_away_mid_run_falls_back(client_onnx, tmp_path, streaming, n_events, seed):
    """Unary and streaming clients both fall back locally once the server dies."""
    from lightspeed.serve.repo_add import EntryOptions, add_model

    add_model(client_onnx, tmp_path / "repo", "mlp", EntryOptions(max_batch_size=8))
    srv = BackgroundServer(
        ServerConfig(repository=tmp_path / "repo", grpc_port=0, http_port=-1, metrics_port=-1)
    )
    srv.start()
    ev = _events(n_events, seed=seed)

    async def main():
        c = SonicClient(
            srv.grpc_url, "mlp", streaming=streaming, fallback=client_onnx, timeout_s=1.0, retries=1
        )
        async with c:
            first = await c.infer_event(ev[0])
            srv.stop()
            rest = [await c.infer_event(e) for e in ev[1:]]
            return [first, *rest], c.stats

    try:
        outs, stats = run(main())
    finally:
        srv.stop()
    for e, o in zip(ev, outs, strict=True):
        np.testing.assert_allclose(o["y"], mlp_numpy(e), rtol=1e-5, atol=1e-6)
    assert stats.remote_events == 1 and stats.fallback_events == n_events - 1


def test_retry_moves_to_a_live_endpoint(client_server):
    dead = f"127.0.0.1:{free_port()}"
    x = np.ones((2, 16), np.float32)

    async def main():
        c = SonicClient([dead, client_server.grpc_url], "mlp", retries=2, timeout_s=2.0)
        async with c:
            outs = [await c.infer_event(x) for _ in range(4)]
            return outs, c.stats, c.endpoints

    outs, stats, endpoints = run(main())
    for o in outs:
        np.testing.assert_allclose(o["y"], mlp_numpy(x), rtol=1e-5, atol=1e-6)
    assert stats.remote_events == 4
    assert endpoints[0].failures >= 1  # the dead one is now cooling down
    assert stats.retries <= 1  # ... so later events went straight to the live one


def test_least_outstanding_endpoint_is_chosen():
    c = SonicClient(["a:1", "b:2", "c:3"], "m", spec=None)
    for ep, n in zip(c.endpoints, (3, 1, 2), strict=True):
        ep.client = object()
        ep.outstanding = n
    assert c._pick(set()).url == "b:2"
    assert c._pick({1}).url == "c:3"


def test_slow_server_times_out_and_falls_back(tmp_path):
    srv = BackgroundServer(
        ServerConfig(grpc_port=0, http_port=-1, metrics_port=-1), setup=add_python_models
    )
    x = np.ones((1, 4), np.float32)
    with srv:

        async def main():
            c = SonicClient(
                srv.grpc_url, "slow", timeout_s=0.1, retries=1, fallback=lambda d: {"y": d["x"] * 2}
            )
            async with c:
                return await c.infer_event(x), c.stats

        out, stats = run(main())
    np.testing.assert_array_equal(out["y"], 2 * x)
    assert stats.fallback_events == 1 and stats.retries == 1


def test_streaming_client_matches_unary(client_server):
    events = _events(12, seed=4)

    async def main():
        async with SonicClient(client_server.grpc_url, "mlp", streaming=True) as c:
            outs = await c.infer_events(events)
            with pytest.raises(InferenceError) as info:
                await c.infer_event({"x": np.zeros((2, 16), np.float32), "z": np.zeros(2)})
            return outs, c.stats, info.value

    outs, stats, err = run(main())
    for ev, out in zip(events, outs, strict=True):
        np.testing.assert_allclose(out["y"], mlp_numpy(ev), rtol=1e-5, atol=1e-6)
    assert stats.remote_events == len(events)
    assert stats.requests == sum(-(-len(e) // 8) for e in events) + 1
    assert "no input named 'z'" in str(err) or "input" in str(err)
