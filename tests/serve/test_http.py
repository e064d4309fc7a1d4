"""The server driven by the real tritonclient over HTTP (binary extension and JSON)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

from tests.serve.serve_helpers import mlp_numpy


def _input(x, name="x", datatype="FP32", binary=True, module=httpclient):
    i = module.InferInput(name, list(x.shape), datatype)
    i.set_data_from_numpy(x, binary_data=binary)
    return i


@pytest.fixture
def client(server):
    c = httpclient.InferenceServerClient(server.http_url)
    yield c
    c.close()


def _post(server, path, body: bytes, headers=None):
    req = urllib.request.Request(
        f"http://{server.http_url}{path}", data=body, headers=headers or {}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False, None])
def test_infer_binary_and_json(client, x8, binary_in, binary_out):
    outputs = None if binary_out is None else [httpclient.InferRequestedOutput("y", binary_out)]
    r = client.infer("mlp", [_input(x8, binary=binary_in)], outputs=outputs)
    np.testing.assert_allclose(r.as_numpy("y"), mlp_numpy(x8), rtol=1e-5, atol=1e-6)


def test_health_metadata_config_stats(client, x8):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and not client.is_model_ready("nope")
    assert client.get_server_metadata()["name"] == "lightspeed"
    meta = client.get_model_metadata("mlp")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    config = client.get_model_config("mlp")
    assert config["max_batch_size"] == 8 and config["platform"] == "onnxruntime_onnx"
    client.infer("mlp", [_input(x8)])
    stats = client.get_inference_statistics("mlp")["model_stats"][0]
    assert stats["inference_count"] >= 8 and stats["inference_stats"]["success"]["count"] >= 1


def test_aio_client(server, x8):
    async def run():
        c = httpaio.InferenceServerClient(server.http_url)
        try:
            r = await c.infer("mlp_py", [_input(x8, module=httpaio)])
            return r.as_numpy("y")
        finally:
            await c.close()

    np.testing.assert_allclose(asyncio.run(run()), mlp_numpy(x8), rtol=1e-5, atol=1e-6)


def test_repository_endpoints(client):
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["mlp"]["state"] == "READY"
    assert index["broken_config"]["state"] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException) as info:
        client.load_model("broken_config")
    assert "malformed config.pbtxt" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.unload_model("not_a_model")
    assert "not loaded" in info.value.message()


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda x: [_input(x, name="z")], "no input named 'z'"),
        (lambda x: [_input(x[:, :15])], "expected [-1, 16]"),
        (lambda x: [_input(x.astype(np.float64), datatype="FP64")], "expected FP32"),
        (lambda x: [_input(np.concatenate([x, x]))], "exceeds max_batch_size 8"),
    ],
)
def test_bad_input_is_400(client, x8, make, text):
    with pytest.raises(InferenceServerException) as info:
        client.infer("mlp", make(x8))
    assert info.value.status() == "400"
    assert text in info.value.message()


def test_unknown_model_is_404(client, x8):
    with pytest.raises(InferenceServerException) as info:
        client.infer("no_such_model", [_input(x8)])
    assert info.value.status() == "404"


def test_malformed_json_is_400(server):
    status, body = _post(server, "/v2/models/mlp/infer", b"{not json")
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]


def test_wrong_binary_size_is_400(server, x8):
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [8, 16],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 512},
                }
            ]
        }
    ).encode()
    status, body = _post(
        server,
        "/v2/models/mlp/infer",
        head + x8.tobytes()[:100],
        {"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 400 and "runs past" in json.loads(body)["error"]


def test_oversized_body_is_413(server):
    status, _ = _post(server, "/v2/models/mlp/infer", b"0" * (5 * 1024 * 1024))
    assert status == 413


def test_metrics_endpoint(server, client, x8):
    client.infer("mlp", [_input(x8)])
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    for name in (
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_request_duration_ms_bucket",
        "nv_inference_batch_size_bucket",
    ):
        assert name in text
    line = next(ln for ln in text.splitlines() if ln.startswith('nv_inference_count{model="mlp",'))
    assert float(line.split()[-1]) >= 8
