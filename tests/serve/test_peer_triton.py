"""Side by side with a real NVIDIA Triton server (tritonserver from the nvidia-pytriton wheel).

Skipped unless the Triton peer venv exists (see docs/serving.md, "Real Triton side by side").
"""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from lightspeed.errors import ToolMissingError
from lightspeed.serve import peers
from lightspeed.serve.repo_add import EntryOptions, add_model
from lightspeed.serve.server import BackgroundServer, ServerConfig
from tests.serve.serve_helpers import mlp_numpy

pytestmark = pytest.mark.peer

try:
    peers.triton_paths()
    _MISSING = ""
except ToolMissingError as exc:
    _MISSING = str(exc)


@pytest.fixture(scope="module")
def triton_setup(tmp_path_factory, mlp_onnx):
    if _MISSING:
        pytest.skip(_MISSING)
    root = tmp_path_factory.mktemp("peer")
    repo = root / "repo"
    # one entry both servers load as-is: a Triton python-backend model.py running onnxruntime
    add_model(mlp_onnx, repo, "jets", EntryOptions(max_batch_size=64, backend="python"))
    # and the plain onnxruntime entry (served by lightspeed; this Triton build lacks the backend)
    ort_repo = root / "ort_repo"
    add_model(mlp_onnx, ort_repo, "jets", EntryOptions(max_batch_size=64))
    with peers.start_triton(repo) as triton:
        ls = BackgroundServer(
            ServerConfig(repository=repo, grpc_port=0, http_port=0, metrics_port=-1)
        )
        ls_ort = BackgroundServer(
            ServerConfig(repository=ort_repo, grpc_port=0, http_port=-1, metrics_port=-1)
        )
        with ls, ls_ort:
            yield triton, ls, ls_ort, ort_repo


def _infer(url, model, x, module=grpcclient):
    c = module.InferenceServerClient(url)
    i = module.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    y = c.infer(model, [i]).as_numpy("y")
    c.close()
    return y


def test_same_entry_gives_identical_outputs(triton_setup):
    triton, ls, ls_ort, _ = triton_setup
    x = np.random.default_rng(7).normal(size=(64, 16)).astype(np.float32)
    y_triton = _infer(triton.grpc_url, "jets", x)
    y_ls = _infer(ls.grpc_url, "jets", x)
    y_ls_ort = _infer(ls_ort.grpc_url, "jets", x)
    y_http = _infer(triton.http_url, "jets", x, httpclient)
    np.testing.assert_array_equal(y_ls, y_triton)
    np.testing.assert_array_equal(y_ls_ort, y_triton)
    np.testing.assert_array_equal(y_http, y_triton)
    np.testing.assert_allclose(y_triton, mlp_numpy(x), rtol=1e-5, atol=1e-6)


def test_config_and_statistics_agree_in_shape(triton_setup):
    triton, ls, _, _ = triton_setup
    configs = []
    stats = []
    for url in (triton.grpc_url, ls.grpc_url):
        c = grpcclient.InferenceServerClient(url)
        configs.append(c.get_model_config("jets").config)
        stats.append(c.get_inference_statistics("jets").model_stats[0])
        c.close()
    t, mine = configs
    assert (t.max_batch_size, t.backend) == (mine.max_batch_size, mine.backend) == (64, "python")
    assert [(i.name, list(i.dims), i.data_type) for i in t.input] == [
        (i.name, list(i.dims), i.data_type) for i in mine.input
    ]
    for s in stats:
        assert s.name == "jets" and s.inference_stats.success.count >= 1


@pytest.mark.parametrize("streaming", [False, True])
def test_sonic_client_against_real_triton(triton_setup, streaming):
    from lightspeed.client import SonicClient

    triton, *_ = triton_setup
    events = [np.random.default_rng(i).normal(size=(n, 16)).astype(np.float32) for i, n in
              enumerate((3, 70, 1))]  # fmt: skip

    async def main():
        async with SonicClient(triton.grpc_url, "jets", streaming=streaming) as c:
            return await c.infer_events(events), c.stats, await c.statistics()

    outs, st, server_stats = asyncio.run(main())
    for e, o in zip(events, outs, strict=True):
        np.testing.assert_allclose(o["y"], mlp_numpy(e), rtol=1e-5, atol=1e-6)
    assert st.requests == 4  # the 70-object event was split at max_batch_size 64
    assert server_stats[0]["model_stats"][0]["name"] == "jets"


def test_triton_parses_the_onnxruntime_entry(triton_setup, tmp_path):
    """Real Triton accepts our onnxruntime_onnx config; it only lacks the backend library."""
    _, _, _, ort_repo = triton_setup
    repo = tmp_path / "repo"
    shutil.copytree(ort_repo, repo)
    with peers.start_triton(repo, require_ready=False) as triton:
        c = httpclient.InferenceServerClient(triton.http_url)
        index = {m["name"]: m for m in c.get_model_repository_index()}
        c.close()
    reason = index["jets"].get("reason", "")
    assert index["jets"]["state"] == "UNAVAILABLE"
    # the config parsed (version found, platform mapped to the onnxruntime backend); only
    # the backend library is absent from this Triton build
    assert index["jets"]["version"] == "1"
    assert "unable to find backend library for backend 'onnxruntime'" in reason, reason
