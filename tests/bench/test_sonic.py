"""SONIC capacity study: the model, its fit, and a short real study with 1-4 clients."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lightspeed.bench.sonic import SonicConfig, fit_sonic, markdown_table, run_sonic, sonic_time
from lightspeed.errors import ConfigError


def test_sonic_time_branches():
    t_cpu, p, t_gpu, t_lat = 0.010, 0.4, 0.001, 0.0005
    t_ideal = (1 - p) * t_cpu + t_gpu + t_lat  # 7.5 ms
    n = np.array([1, 5, 7, 8, 20, 40])
    t = sonic_time(n, t_cpu, p, t_gpu, t_lat)
    # Below saturation (N <= t_ideal/t_GPU = 7.5) every client sees t_ideal.
    assert np.allclose(t[:3], t_ideal)
    # Above it the server is the bottleneck: t = N * t_GPU, throughput = 1/t_GPU.
    assert np.allclose(t[3:], n[3:] * t_gpu)
    assert np.allclose(n[3:] / t[3:], 1 / t_gpu)
    # Two servers double the saturation point.
    assert np.allclose(sonic_time(np.array([10.0]), t_cpu, p, t_gpu, t_lat, n_gpu=2), t_ideal)


def test_fit_recovers_parameters():
    t_cpu, p, t_gpu, t_lat = 0.004, 0.25, 0.0004, 0.0007
    n = np.array([1, 2, 4, 8, 12, 16, 24, 32], dtype=float)
    t = sonic_time(n, t_cpu, p, t_gpu, t_lat)
    fit = fit_sonic(n, t, t_cpu, p)
    assert fit["t_gpu_s"] == pytest.approx(t_gpu, rel=1e-3)
    assert fit["t_latency_s"] == pytest.approx(t_lat, rel=1e-2, abs=1e-6)
    assert fit["n_saturation"] == pytest.approx((0.003 + t_gpu + t_lat) / t_gpu, rel=1e-2)
    assert fit["server_capacity_per_s"] == pytest.approx(1 / t_gpu, rel=1e-3)
    assert fit["rms_residual_s"] < 1e-6


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "exactly one of --model"),
        ({"model": "m", "target": "grpc://h:1/m"}, "exactly one of --model"),
        ({"model": "m", "clients": [0, 2]}, "--clients must be positive"),
        ({"model": "m", "work": "busy"}, "--work must be one of"),
        ({"model": "m", "mode": "maybe"}, "--mode must be one of"),
        ({"target": "grpc://h:1/m"}, "--local-model"),
        ({"model": "m", "cpu_ms": -1.0}, "--cpu-ms"),
        ({"model": "m", "client": "curl"}, "--client must be one of"),
    ],
)
def test_invalid_config(kw, message):
    with pytest.raises(ConfigError, match=message):
        SonicConfig(**kw).validate()


def test_unreachable_target_fails_fast(tmp_path):
    pytest.importorskip("tritonclient.grpc")
    import socket

    from lightspeed.bench._targets import ServerUnreachableError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = SonicConfig(
        target=f"grpc://127.0.0.1:{port}/m", local=False, timeout_s=1.0, outdir=tmp_path
    )
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}"):
        run_sonic(cfg)


@pytest.mark.parametrize(
    ("mode", "client"), [("sync", "tritonclient"), ("async", "tritonclient"), ("async", "sonic")]
)
def test_short_capacity_study(mode, client, compiled_tagger, tmp_path):
    pytest.importorskip("tritonclient.grpc")
    pytest.importorskip("scipy")
    if client == "sonic":
        pytest.importorskip("lightspeed.client", reason="the SONIC client is not in this build")
    cfg = SonicConfig(
        model=str(compiled_tagger),
        clients=[1, 2, 4],
        cpu_ms=1.0,
        mode=mode,
        client=client,
        duration_s=0.6,
        warmup_s=0.2,
        local=mode == "sync",
        outdir=tmp_path,
    )
    result = run_sonic(cfg)
    assert [r["clients"] for r in result["remote"]] == [1, 2, 4]
    for r in result["remote"]:
        assert r["events"] > 0 and r["throughput_events_per_s"] > 0
        assert r["event_time_mean_s"] > 0 and r["infer_time_mean_s"] > 0
        # Every event did its CPU work (1 ms of sleep) plus one inference.
        assert r["work_time_mean_s"] >= 0.001
    fit = result["fit"]
    for key in ("t_gpu_s", "t_latency_s", "t_ideal_s", "n_saturation"):
        assert np.isfinite(fit[key]) and fit[key] >= 0
    if mode == "sync":
        assert [r["clients"] for r in result["local"]] == [1, 2, 4]
        assert 0 < fit["p"] < 1
        assert set(result["speedup_vs_local"]) == {"1", "2", "4"}
    else:
        assert result["local"] == [] and fit["p"] == 0.0
    saved = json.loads((tmp_path / "sonic.json").read_text())
    assert saved["kind"] == "sonic" and saved["fit"]["t_gpu_s"] == pytest.approx(fit["t_gpu_s"])
    for name in ("sonic_throughput.png", "sonic_latency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 4 |" in markdown_table(result)
