"""Config fields production repositories use: model_warmup, response_cache, priorities.

Each is driven through a real server on loopback with the real tritonclient where
the protocol is involved; the scheduler's priority order is checked on its own.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from lightspeed.serve.batcher import BatchingPolicy, QueuePolicy, Scheduler
from lightspeed.serve.errors import ServeError
from lightspeed.serve.server import BackgroundServer, ServerConfig

IO = ([("x", "FP32", [4])], [("y", "FP32", [4])])


class Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.lock = threading.Lock()

    def __call__(self, d):
        with self.lock:
            self.calls += 1
            self.rows += len(d["x"])
        return {"y": d["x"] * 3}


def _infer(url, model, x, **kw):
    c = grpcclient.InferenceServerClient(url)
    try:
        i = grpcclient.InferInput("x", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        return c.infer(model, [i], **kw)
    finally:
        c.close()


# ------------------------------------------------------------------ model_warmup
def test_warmup_runs_every_sample_on_every_instance_before_ready():
    fn = Counting()
    warm = {
        "model_warmup": [
            {"name": "zeros", "batch_size": 2, "count": 3, "inputs": {
                "x": {"data_type": "TYPE_FP32", "dims": [4], "zero_data": True}}},
            {"name": "noise", "batch_size": 1, "inputs": {
                "x": {"data_type": "TYPE_FP32", "dims": [4], "random_data": True}}},
        ]
    }  # fmt: skip

    def setup(core):
        core.add_python_model("w", fn, *IO, max_batch_size=4, instances=2, extra=warm)

    cfg = ServerConfig(repository=None, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg, setup=setup) as srv:
        assert fn.calls == 2 * (3 + 1)  # (3 runs of one sample + 1 of the other) x 2 instances
        assert fn.rows == 2 * (3 * 2 + 1)
        out = _infer(srv.grpc_url, "w", np.ones((1, 4), np.float32))
        np.testing.assert_array_equal(out.as_numpy("y"), 3 * np.ones((1, 4)))


def test_warmup_from_a_file_and_a_failing_sample_fails_the_load(tmp_path, mlp_onnx):
    d = tmp_path / "m"
    (d / "1").mkdir(parents=True)
    (d / "warmup").mkdir()
    (d / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    np.linspace(-1, 1, 16, dtype=np.float32).tofile(d / "warmup" / "x.bin")
    ok = (
        'model_warmup [{ name: "file" batch_size: 1 inputs { key: "x" value: '
        '{ data_type: TYPE_FP32 dims: [16] input_data_file: "x.bin" } } }]'
    )
    bad = ok.replace("dims: [16]", "dims: [8]")  # the file has 16 floats
    (d / "config.pbtxt").write_text(
        f'name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n{ok}\n'
    )
    (tmp_path / "b" / "1").mkdir(parents=True)
    (tmp_path / "b" / "warmup").mkdir()
    (d / "warmup" / "x.bin").rename(tmp_path / "b" / "warmup" / "x.bin")
    np.zeros(16, np.float32).tofile(d / "warmup" / "x.bin")
    (tmp_path / "b" / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    (tmp_path / "b" / "config.pbtxt").write_text(
        f'name: "b"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n{bad}\n'
    )
    cfg = ServerConfig(repository=tmp_path, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg) as srv:
        index = {m["name"]: m for m in srv.server.core.index()}
    assert index["m"]["state"] == "READY"
    assert index["b"]["state"] == "UNAVAILABLE"
    assert "model_warmup 'file'" in index["b"]["reason"] and "bytes" in index["b"]["reason"]


# ------------------------------------------------------------------ response_cache
def test_response_cache_answers_repeats_without_running_the_model():
    fn = Counting()

    def setup(core):
        core.add_python_model(
            "c", fn, *IO, max_batch_size=4, extra={"response_cache": {"enable": True}}
        )

    cfg = ServerConfig(
        repository=None, grpc_port=0, http_port=-1, metrics_port=-1, response_cache_mb=1
    )
    x = np.arange(4, dtype=np.float32)[None]
    with BackgroundServer(cfg, setup=setup) as srv:
        first = _infer(srv.grpc_url, "c", x).as_numpy("y")
        again = _infer(srv.grpc_url, "c", x).as_numpy("y")
        other = _infer(srv.grpc_url, "c", x + 1).as_numpy("y")
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        stats = c.get_inference_statistics("c").model_stats[0].inference_stats
        c.close()
    np.testing.assert_array_equal(first, 3 * x)
    np.testing.assert_array_equal(again, 3 * x)
    np.testing.assert_array_equal(other, 3 * (x + 1))
    assert fn.calls == 2  # the repeat came from the cache
    assert stats.cache_hit.count == 1 and stats.cache_miss.count == 2
    assert stats.success.count == 3


def test_response_cache_without_a_server_cache_fails_the_load():
    errors = []

    def setup(core):
        try:
            core.add_python_model(
                "c", Counting(), *IO, max_batch_size=4, extra={"response_cache": {"enable": True}}
            )
        except ServeError as exc:
            errors.append(exc.message)

    cfg = ServerConfig(repository=None, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg, setup=setup):
        pass
    assert errors and "--response-cache-mb" in errors[0]


def test_cache_evicts_least_recently_used():
    from lightspeed.serve.cache import ResponseCache

    cache = ResponseCache(max_bytes=3 * 32)
    for k in range(3):
        cache.put(bytes([k]), {"y": np.zeros(4)})  # 32 bytes each
    assert cache.get(bytes([0])) is not None  # 0 is now the most recent
    cache.put(bytes([3]), {"y": np.zeros(4)})
    assert cache.get(bytes([1])) is None and cache.get(bytes([0])) is not None
    assert cache.bytes == 96 and len(cache) == 3
    with pytest.raises(ValueError):
        cache.get(bytes([0]))["y"][0] = 1  # cached arrays are read-only


# ------------------------------------------------------------------ priorities
def _priority_run(policy, submissions, delay=0.02):
    """Occupy the only instance, queue the submissions, return the execution order."""
    order = []

    def execute(instance, inputs, outputs):
        time.sleep(delay)
        order.append(int(inputs["x"][0, 0]))
        return {"y": inputs["x"]}

    async def run():
        s = Scheduler("m", [0], execute, policy, ["y"])
        busy = s.submit({"x": np.full((1, 1), -1.0)}, 1, None)
        await asyncio.sleep(0.005)  # the blocker is running
        futs = [
            s.submit({"x": np.full((1, 1), float(v))}, 1, None, timeout, "", prio)
            for v, prio, timeout in submissions
        ]
        out = await asyncio.gather(busy, *futs, return_exceptions=True)
        await s.close()
        return out

    return order, asyncio.run(run())


def test_higher_priority_requests_run_first():
    policy = BatchingPolicy(max_batch_size=1, dynamic=True, priority_levels=3, default_priority=2)
    order, _ = _priority_run(policy, [(1, 3, 0), (2, 0, 0), (3, 1, 0), (4, 3, 0), (5, 1, 0)])
    assert order == [-1, 3, 5, 2, 1, 4]  # level 1, then the default level 2, then level 3


def test_priority_outside_the_levels_is_refused():
    policy = BatchingPolicy(max_batch_size=1, dynamic=True, priority_levels=2, default_priority=1)
    _priority_run(policy, [(1, 1, 0)])  # in range: fine
    with pytest.raises(ServeError, match=r"outside 1\.\.2"):
        _priority_run(policy, [(1, 5, 0)])
    plain = BatchingPolicy(max_batch_size=1, dynamic=True)
    with pytest.raises(ServeError, match="no dynamic_batching priority_levels"):
        _priority_run(plain, [(1, 1, 0)])


def test_timeout_action_delay_demotes_instead_of_failing():
    delay = QueuePolicy(default_timeout_ns=5_000_000, delay_on_timeout=True)
    reject = QueuePolicy(default_timeout_ns=5_000_000)
    policy = BatchingPolicy(
        max_batch_size=1,
        dynamic=True,
        priority_levels=2,
        default_priority=2,
        level_policies=((1, delay), (2, reject)),
    )
    order, out = _priority_run(policy, [(1, 1, 0), (2, 1, 0), (3, 2, 0)], delay=0.03)
    # level 1 timed out while the blocker ran: delayed behind level 2, which failed its deadline
    assert isinstance(out[3], ServeError) and out[3].code == "DEADLINE_EXCEEDED"
    assert not isinstance(out[1], Exception) and not isinstance(out[2], Exception)
    assert order == [-1, 1, 2]


def test_priority_over_grpc(tmp_path, mlp_onnx):
    d = tmp_path / "p"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    (d / "config.pbtxt").write_text(
        'name: "p"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        "dynamic_batching { priority_levels: 2 default_priority_level: 2 "
        "priority_queue_policy { key: 1 value: { max_queue_size: 4 } } }\n"
    )
    cfg = ServerConfig(repository=tmp_path, grpc_port=0, http_port=-1, metrics_port=-1)
    x = np.ones((1, 16), np.float32)
    with BackgroundServer(cfg) as srv:
        assert (
            _infer(srv.grpc_url, "p", x, priority=1)
            .as_numpy(srv.server.core.get("p").output_names[0])
            .shape[0]
            == 1
        )
        with pytest.raises(InferenceServerException, match=r"outside 1\.\.2"):
            _infer(srv.grpc_url, "p", x, priority=7)


# ------------------------------------------------------------------ ensembles
PY_MODEL = "import numpy as np\n\n\ndef infer(inputs):\n    return {expr}\n"


def _py_model(repo, name, expr, inputs, outputs, batching=True):
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(PY_MODEL.format(expr=expr))
    io = "".join(
        f'{kind} [{{ name: "{n}" data_type: TYPE_FP32 dims: {dims} }}]\n'
        for kind, items in (("input", inputs), ("output", outputs))
        for n, dims in items
    )
    dyn = "dynamic_batching { max_queue_delay_microseconds: 5000 }\n" if batching else ""
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 8\n{io}{dyn}'
    )


ENSEMBLE = """
name: "pipe"
platform: "ensemble"
max_batch_size: 8
input [{ name: "RAW" data_type: TYPE_FP32 dims: [16] }]
output [{ name: "PROB" data_type: TYPE_FP32 dims: [5] },
        { name: "SUM" data_type: TYPE_FP32 dims: [1] }]
ensemble_scheduling { step [
  { model_name: "post" model_version: -1 input_map { key: "y" value: "LOGITS" }
    output_map { key: "p" value: "PROB" } },
  { model_name: "pre" model_version: -1 input_map { key: "raw" value: "RAW" }
    output_map { key: "xs" value: "X" } },
  { model_name: "mlp" model_version: 1 input_map { key: "x" value: "X" }
    output_map { key: "y" value: "LOGITS" } },
  { model_name: "norm" model_version: -1 input_map { key: "raw" value: "RAW" }
    output_map { key: "s" value: "SUM" } }
] }
"""


@pytest.fixture(scope="module")
def ensemble_repo(tmp_path_factory, mlp_onnx):
    repo = tmp_path_factory.mktemp("ens")
    _py_model(repo, "pre", '{"xs": (inputs["raw"] - 1.0) * 0.5}', [("raw", [16])], [("xs", [16])])
    _py_model(
        repo,
        "post",
        '{"p": np.exp(inputs["y"]) / np.exp(inputs["y"]).sum(axis=1, keepdims=True)}',
        [("y", [5])],
        [("p", [5])],
    )
    _py_model(
        repo, "norm", '{"s": inputs["raw"].sum(axis=1, keepdims=True)}', [("raw", [16])],
        [("s", [1])], batching=False,
    )  # fmt: skip
    (repo / "mlp" / "1").mkdir(parents=True)
    (repo / "mlp" / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    (repo / "mlp" / "config.pbtxt").write_text(
        'name: "mlp"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        "dynamic_batching { max_queue_delay_microseconds: 5000 }\n"
    )
    (repo / "pipe" / "1").mkdir(parents=True)
    (repo / "pipe" / "config.pbtxt").write_text(ENSEMBLE)
    broken = ENSEMBLE.replace('"pipe"', '"broken"').replace(
        'key: "x" value: "X"', 'key: "x" value: "Z"'
    )
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(broken)
    missing = ENSEMBLE.replace('"pipe"', '"missing"').replace('"norm"', '"nowhere"')
    (repo / "missing" / "1").mkdir(parents=True)
    (repo / "missing" / "config.pbtxt").write_text(missing)
    return repo


def test_ensemble_runs_the_pipeline_and_batches_its_steps(ensemble_repo):
    from tests.serve.serve_helpers import mlp_numpy

    cfg = ServerConfig(repository=ensemble_repo, grpc_port=0, http_port=-1, metrics_port=-1)
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(8, 1, 16)).astype(np.float32)
    with BackgroundServer(cfg) as srv:
        index = {m["name"]: m for m in srv.server.core.index()}
        assert index["pipe"]["state"] == "READY"
        results: list = [None] * len(xs)

        def client(k):
            c = grpcclient.InferenceServerClient(srv.grpc_url)
            i = grpcclient.InferInput("RAW", [1, 16], "FP32")
            i.set_data_from_numpy(xs[k])
            results[k] = c.infer("pipe", [i])
            c.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        pre = c.get_inference_statistics("pre").model_stats[0]
        pipe = c.get_inference_statistics("pipe").model_stats[0]
        with pytest.raises(InferenceServerException, match="expected"):
            i = grpcclient.InferInput("RAW", [1, 15], "FP32")
            i.set_data_from_numpy(np.zeros((1, 15), np.float32))
            c.infer("pipe", [i])
        c.close()
    for x, r in zip(xs, results, strict=True):
        logits = mlp_numpy((x - 1.0) * 0.5)
        want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(r.as_numpy("PROB"), want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.as_numpy("SUM"), x.sum(axis=1, keepdims=True), rtol=1e-5)
    assert pipe.inference_stats.success.count == len(xs)
    assert pre.inference_count == len(xs) and pre.execution_count < len(xs)  # merged
    assert "writes" not in index["broken"]["reason"]
    assert "'Z'" in index["broken"]["reason"] and index["broken"]["state"] == "UNAVAILABLE"
    assert "'nowhere' is not ready" in index["missing"]["reason"]


def test_ensemble_scheduling_needs_the_ensemble_platform():
    from lightspeed.serve.repository import parse_config_text, validate_config

    text = 'name: "m"\nplatform: "onnxruntime_onnx"\nensemble_scheduling { step [] }\n'
    with pytest.raises(ServeError, match='needs platform: "ensemble"'):
        validate_config(parse_config_text(text, "c"), "m")
