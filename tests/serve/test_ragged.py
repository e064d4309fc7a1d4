"""Ragged batching: variable-size events merged into one execution, the Triton way.

The model is a real ONNX graph served by onnxruntime over loopback: it sums each
event's values with the BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO offsets and
doubles every value (a BATCH_SCATTER_WITH_INPUT_SHAPE output), so a wrong merge
or split gives a wrong number, not just a wrong shape.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from lightspeed.serve.batcher import BatchingPolicy, Scheduler
from lightspeed.serve.errors import ServeError
from lightspeed.serve.ragged import BatchInput, RaggedSpec
from lightspeed.serve.repository import parse_config_text, validate_config

onnx = pytest.importorskip("onnx")
grpcclient = pytest.importorskip("tritonclient.grpc")

KINDS = {
    "BATCH_ELEMENT_COUNT": [3, 8, 2],
    "BATCH_ACCUMULATED_ELEMENT_COUNT": [3, 11, 13],
    "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO": [0, 3, 11, 13],
    "BATCH_ITEM_SHAPE": [[3], [8], [2]],
    "BATCH_ITEM_SHAPE_FLATTEN": [3, 8, 2],
}


def _events():
    return [np.arange(n, dtype=np.float32).reshape(1, n) + 10 * i for i, n in enumerate((3, 8, 2))]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_batch_input_kinds(kind):
    spec = RaggedSpec(frozenset({"x"}), (BatchInput(kind, "b", np.dtype(np.int32), "x"),))
    merged = spec.merge([{"x": e} for e in _events()])
    np.testing.assert_array_equal(merged["x"], np.concatenate([e.ravel() for e in _events()]))
    assert merged["b"].dtype == np.int32
    np.testing.assert_array_equal(merged["b"], KINDS[kind])


def test_max_element_count_is_a_shape():
    spec = RaggedSpec(
        frozenset({"x"}),
        (BatchInput("BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", "b", np.dtype(np.float32), "x"),),
    )
    assert spec.merge([{"x": e} for e in _events()])["b"].shape == (8,)


def test_split_scatters_by_input_shape_and_rows():
    events = _events()
    spec = RaggedSpec(frozenset({"x"}), (), (("y", "x"),))
    result = {"y": np.concatenate([e.ravel() for e in events]) * 2, "s": np.arange(3.0)[:, None]}
    pieces = spec.split(result, [{"x": e} for e in events], [1, 1, 1], ["y", "s"])
    for e, i, p in zip(events, range(3), pieces, strict=True):
        np.testing.assert_array_equal(p["y"], e * 2)
        assert p["y"].shape == e.shape
        np.testing.assert_array_equal(p["s"], [[i]])
    with pytest.raises(ServeError, match="one row per request"):
        spec.split(
            {"y": result["y"], "s": np.arange(2.0)}, [{"x": e} for e in events], [1] * 3, ["s"]
        )


def test_scheduler_merges_ragged_events_into_one_execution():
    seen = []
    lock = threading.Lock()

    def execute(instance, inputs, outputs):
        with lock:
            seen.append(inputs["x"].shape)
        if np.isinf(inputs["x"]).any():
            raise ValueError("cannot take inf")
        acc = inputs["acc"]
        cs = np.concatenate([[0.0], np.cumsum(inputs["x"])])
        return {"y": inputs["x"] * 2, "s": (cs[acc[1:]] - cs[acc[:-1]])[:, None]}

    spec = RaggedSpec(
        frozenset({"x"}),
        (BatchInput("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "acc", np.dtype(np.int64), "x"),),
        (("y", "x"),),
    )
    policy = BatchingPolicy(max_batch_size=8, dynamic=True, max_queue_delay_ns=10**7, ragged=spec)
    events = _events()
    bad = np.array([[1.0, np.inf]], np.float32)

    async def run():
        s = Scheduler("m", [0], execute, policy, ["y", "s"])
        futs = [s.submit({"x": e}, 1, None) for e in events]
        futs.append(s.submit({"x": bad}, 1, ["s"]))
        out = await asyncio.gather(*futs, return_exceptions=True)
        await s.close()
        return out, s.stats

    out, stats = asyncio.run(run())
    assert seen[0] == (15,)  # one merged execution of all 4 events (3 + 8 + 2 + 2 values)
    for e, r in zip(events, out[:3], strict=True):
        np.testing.assert_array_equal(r["y"], e * 2)
        np.testing.assert_allclose(r["s"], [[e.sum()]])
    assert isinstance(out[3], ServeError) and out[3].code == "INTERNAL"
    assert stats.success_count == 3 and stats.fail_count == 1


BASE = """
name: "m"
backend: "python"
max_batch_size: 8
input [{ name: "x" data_type: TYPE_FP32 dims: [-1] allow_ragged_batch: true }]
output [{ name: "y" data_type: TYPE_FP32 dims: [-1] }]
"""


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "n" data_type: TYPE_INT32 '
            'source_input: "nope" }]',
            "source_input 'nope'",
        ),
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "x" data_type: TYPE_INT32 '
            'source_input: "x" }]',
            "also a client input",
        ),
        (
            'batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "n" data_type: TYPE_STRING '
            'source_input: "x" }]',
            "TYPE_INT32",
        ),
        (
            'batch_output [{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "z" '
            'source_input: "x" }]',
            "target 'z' is not an output",
        ),
    ],
)
def test_bad_ragged_configs_fail_the_load(extra, match):
    config = parse_config_text(BASE + extra, "config.pbtxt")
    with pytest.raises(ServeError, match=match):
        validate_config(config, "m")


def test_ragged_needs_a_batch_dimension():
    config = parse_config_text(BASE.replace("max_batch_size: 8", "max_batch_size: 0"), "c")
    with pytest.raises(ServeError, match="max_batch_size > 0"):
        validate_config(config, "m")


def _segment_model(path):
    """x: flat values; acc: offsets with a leading zero -> s: per-event sums, y: 2x."""
    from onnx import TensorProto, helper

    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [0])
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    minus = helper.make_tensor("minus", TensorProto.INT64, [1], [-1])
    big = helper.make_tensor("big", TensorProto.INT64, [1], [2**62])
    begin = helper.make_tensor("begin", TensorProto.INT64, [1], [0])
    col = helper.make_tensor("col", TensorProto.INT64, [2], [-1, 1])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [
        helper.make_node("CumSum", ["x", "axis"], ["cs0"]),
        helper.make_node("Concat", ["zero", "cs0"], ["cs"], axis=0),
        helper.make_node("Slice", ["acc", "one", "big"], ["ends"]),
        helper.make_node("Slice", ["acc", "begin", "minus"], ["starts"]),
        helper.make_node("Gather", ["cs", "ends"], ["hi"]),
        helper.make_node("Gather", ["cs", "starts"], ["lo"]),
        helper.make_node("Sub", ["hi", "lo"], ["s0"]),
        helper.make_node("Reshape", ["s0", "col"], ["s"]),
        helper.make_node("Mul", ["x", "two"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "segments",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("acc", TensorProto.INT64, ["b"]),
        ],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["e", 1]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"]),
        ],
        [zero, axis, one, minus, big, begin, col, two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


CONFIG = """
name: "segments"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [{ name: "x" data_type: TYPE_FP32 dims: [-1] allow_ragged_batch: true }]
batch_input [{ kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "acc"
               data_type: TYPE_INT64 source_input: "x" }]
output [{ name: "s" data_type: TYPE_FP32 dims: [1] },
        { name: "y" data_type: TYPE_FP32 dims: [-1] }]
batch_output [{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "y" source_input: "x" }]
dynamic_batching { max_queue_delay_microseconds: 20000 }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from lightspeed.serve.server import BackgroundServer, ServerConfig

    repo = tmp_path_factory.mktemp("ragged")
    (repo / "segments" / "1").mkdir(parents=True)
    _segment_model(repo / "segments" / "1" / "model.onnx")
    (repo / "segments" / "config.pbtxt").write_text(CONFIG)
    cfg = ServerConfig(repository=repo, grpc_port=0, http_port=0, metrics_port=0)
    with BackgroundServer(cfg) as srv:
        yield srv


def test_concurrent_events_of_any_size_are_answered_from_shared_batches(server):
    rng = np.random.default_rng(5)
    events = [rng.normal(size=(1, int(n))).astype(np.float32) for n in rng.integers(1, 40, 24)]
    results: list = [None] * len(events)

    def client(k):
        c = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            for j in range(k, len(events), 6):
                i = grpcclient.InferInput("x", list(events[j].shape), "FP32")
                i.set_data_from_numpy(events[j])
                results[j] = c.infer("segments", [i])
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e, r in zip(events, results, strict=True):
        np.testing.assert_allclose(r.as_numpy("s"), [[e.sum()]], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(r.as_numpy("y"), e * 2)
    c = grpcclient.InferenceServerClient(server.grpc_url)
    stats = c.get_inference_statistics("segments", as_json=True)["model_stats"][0]
    c.close()
    assert int(stats["inference_count"]) == len(events)
    assert int(stats["execution_count"]) < len(events)  # events of different sizes shared runs


def test_sonic_client_ragged_mode(server):
    from lightspeed.client.sonic import SonicClient

    events = [np.arange(n, dtype=np.float32) for n in (5, 1, 12)]

    async def run():
        async with SonicClient(server.grpc_url, "segments", ragged=True) as c:
            return await c.infer_events(events)

    for e, out in zip(events, asyncio.run(run()), strict=True):
        np.testing.assert_allclose(out["s"], [e.sum()])
        np.testing.assert_array_equal(out["y"], e * 2)
