"""The server driven by the real tritonclient over gRPC (sync, asyncio, streaming)."""

from __future__ import annotations

import asyncio
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from tests.serve.conftest import make_server
from tests.serve.serve_helpers import mlp_numpy


@pytest.fixture(scope="module", params=["h2", "grpcio"])
def server(request, repo):
    """Every test here runs against both gRPC front ends: they must answer alike."""
    with make_server(repo, request.param) as srv:
        yield srv


def _input(x, name="x", datatype="FP32", module=grpcclient):
    i = module.InferInput(name, list(x.shape), datatype)
    i.set_data_from_numpy(x)
    return i


@pytest.fixture
def client(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.mark.parametrize("model", ["mlp", "mlp_nobatch", "mlp_py"])
def test_infer_matches_reference(client, model, x8):
    result = client.infer(model, [_input(x8)], outputs=[grpcclient.InferRequestedOutput("y")])
    y = result.as_numpy("y")
    assert y.shape == (8, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y, mlp_numpy(x8), rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response.model_name == model and response.model_version == "1"


def test_typed_contents_are_accepted(server, x8):
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    req = pb.ModelInferRequest(model_name="mlp", id="typed-1")
    t = req.inputs.add(name="x", datatype="FP32", shape=[8, 16])
    t.contents.fp32_contents.extend(x8.ravel().tolist())
    with grpc.insecure_channel(server.grpc_url) as ch:
        resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req)
    assert resp.id == "typed-1"
    y = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(8, 5)
    np.testing.assert_allclose(y, mlp_numpy(x8), rtol=1e-5, atol=1e-6)


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("no_such_model")
    assert not client.is_model_ready("broken_config")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "lightspeed" and "model_repository" in meta["extensions"]
    mm = client.get_model_metadata("mlp", as_json=True)
    assert mm["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "16"]}]
    assert mm["outputs"] == [{"name": "y", "datatype": "FP32", "shape": ["-1", "5"]}]


def test_model_config_as_sonic_reads_it(client):
    # CMS SONIC's TritonClient reads max_batch_size, input/output names, dims and data types
    config = client.get_model_config("mlp").config
    assert config.name == "mlp" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in config.input] == [("x", [16])]
    from tritonclient.grpc import model_config_pb2 as mc

    assert config.input[0].data_type == mc.TYPE_FP32
    assert config.output[0].name == "y" and list(config.output[0].dims) == [5]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500


def test_model_statistics_as_sonic_reads_them(client, x8):
    before = client.get_inference_statistics("mlp_nobatch").model_stats[0]
    for _ in range(3):
        client.infer("mlp_nobatch", [_input(x8[:2])])
    stats = client.get_inference_statistics("mlp_nobatch", "1").model_stats[0]
    assert stats.name == "mlp_nobatch" and stats.version == "1"
    assert stats.inference_count - before.inference_count == 6
    assert stats.execution_count - before.execution_count == 3
    inf = stats.inference_stats
    assert inf.success.count - before.inference_stats.success.count == 3
    for part in (inf.success, inf.queue, inf.compute_input, inf.compute_infer, inf.compute_output):
        assert part.ns > 0
    assert any(b.batch_size == 2 and b.compute_infer.count >= 3 for b in stats.batch_stats)
    assert stats.last_inference > 0
    all_stats = client.get_inference_statistics().model_stats
    assert {"mlp", "mlp_nobatch", "double"} <= {s.name for s in all_stats}


def test_dynamic_batcher_merges_concurrent_requests(server):
    async def run():
        async with grpcaio.InferenceServerClient(server.grpc_url) as c:
            xs = [np.full((1, 4), i, np.float32) for i in range(32)]
            before = (await c.get_inference_statistics("double")).model_stats[0]
            results = await asyncio.gather(
                *(c.infer("double", [_input(x, module=grpcaio)]) for x in xs)
            )
            after = (await c.get_inference_statistics("double")).model_stats[0]
            return xs, results, before, after

    xs, results, before, after = asyncio.run(run())
    for x, r in zip(xs, results, strict=True):
        np.testing.assert_array_equal(r.as_numpy("y"), 2 * x)
    n_inf = after.inference_count - before.inference_count
    n_exec = after.execution_count - before.execution_count
    assert n_inf == 32
    assert n_exec < 32  # requests were merged into batches


def test_streaming_infer(server, x8):
    responses: queue.Queue = queue.Queue()
    c = grpcclient.InferenceServerClient(server.grpc_url)
    c.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        for i in range(6):
            c.async_stream_infer("mlp", [_input(x8[i : i + 2])], request_id=str(i))
        c.async_stream_infer("mlp", [_input(x8[:2], name="nope")], request_id="bad")
        got = {}
        errors = []
        for _ in range(7):
            result, error = responses.get(timeout=20)
            if error is not None:
                errors.append(error)
            else:
                got[result.get_response().id] = result.as_numpy("y")
    finally:
        c.stop_stream()
        c.close()
    assert sorted(got) == [str(i) for i in range(6)]
    for i in range(6):
        np.testing.assert_allclose(got[str(i)], mlp_numpy(x8[i : i + 2]), rtol=1e-5, atol=1e-6)
    assert len(errors) == 1 and "no input named 'nope'" in str(errors[0])


def test_asyncio_client(server, x8):
    async def run():
        async with grpcaio.InferenceServerClient(server.grpc_url) as c:
            assert await c.is_server_live()
            config = await c.get_model_config("mlp")
            assert config.config.max_batch_size == 8
            r = await c.infer("mlp_py", [_input(x8, module=grpcaio)])
            return r.as_numpy("y")

    np.testing.assert_allclose(asyncio.run(run()), mlp_numpy(x8), rtol=1e-5, atol=1e-6)


def test_repository_index(client):
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["mlp"].state == "READY" and index["mlp"].version == "1"
    assert index["broken_config"].state == "UNAVAILABLE"
    assert "malformed config.pbtxt" in index["broken_config"].reason
    assert "failed to load in onnxruntime" in index["broken_onnx"].reason


# ------------------------------------------------------------------------ bad input
def _status(exc: InferenceServerException) -> str:
    return exc.status()


@pytest.mark.parametrize(
    ("model", "version", "status", "text"),
    [
        ("no_such_model", "", "StatusCode.NOT_FOUND", "'no_such_model' is not loaded"),
        ("mlp", "7", "StatusCode.NOT_FOUND", "version 7 is not loaded"),
        ("broken_config", "", "StatusCode.UNAVAILABLE", "malformed config.pbtxt"),
        ("broken_onnx", "", "StatusCode.UNAVAILABLE", "failed to load in onnxruntime"),
    ],
)
def test_unknown_or_broken_model(client, x8, model, version, status, text):
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [_input(x8)], model_version=version)
    assert _status(info.value) == status
    assert text in info.value.message()


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda x: [_input(x, name="z")], "no input named 'z'"),
        (lambda x: [_input(x[:, :15])], "has shape [8, 15], expected [-1, 16]"),
        (lambda x: [_input(x.astype(np.float64), datatype="FP64")], "datatype FP64, expected FP32"),
        (lambda x: [_input(np.concatenate([x, x]))], "batch size 16 exceeds max_batch_size 8"),
        (lambda x: [], "input 'x' is missing"),
        (lambda x: [_input(x), _input(x, name="x2")], "no input named 'x2'"),
    ],
)
def test_bad_input_is_invalid_argument(client, x8, make, text):
    with pytest.raises(InferenceServerException) as info:
        client.infer("mlp", make(x8))
    assert _status(info.value) == "StatusCode.INVALID_ARGUMENT"
    assert text in info.value.message()
    assert client.is_server_live()


def test_wrong_byte_count(server, x8):
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    req = pb.ModelInferRequest(model_name="mlp")
    req.inputs.add(name="x", datatype="FP32", shape=[8, 16])
    req.raw_input_contents.append(x8.tobytes()[:-4])
    with grpc.insecure_channel(server.grpc_url) as ch, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "got 508 bytes" in info.value.details() and "needs 512 bytes" in info.value.details()


def test_unknown_output_name(client, x8):
    with pytest.raises(InferenceServerException) as info:
        client.infer("mlp", [_input(x8)], outputs=[grpcclient.InferRequestedOutput("nope")])
    assert _status(info.value) == "StatusCode.INVALID_ARGUMENT"
    assert "no output named 'nope'" in info.value.message()


def test_oversized_message_is_rejected(client):
    big = np.zeros((8, 16 * 9000), np.float32)  # ~4.6 MB > the 4 MiB limit of the test server
    with pytest.raises(InferenceServerException) as info:
        client.infer("mlp", [_input(big)])
    assert _status(info.value) == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_live()


def test_backend_exception_is_internal(client):
    x = np.ones((1, 4), np.float32)
    with pytest.raises(InferenceServerException) as info:
        client.infer("crash", [_input(x)])
    assert _status(info.value) == "StatusCode.INTERNAL"
    assert "ZeroDivisionError" in info.value.message()
    np.testing.assert_array_equal(client.infer("double", [_input(x)]).as_numpy("y"), 2 * x)
