"""Fixtures: a model repository with ONNX, python and broken entries, and one live server."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")
pytest.importorskip("aiohttp")
pytest.importorskip("onnxruntime")

from lightspeed.serve.repo_add import EntryOptions, add_model
from lightspeed.serve.server import BackgroundServer, ServerConfig
from tests.serve.serve_helpers import write_mlp_onnx


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory):
    return write_mlp_onnx(tmp_path_factory.mktemp("onnx") / "mlp.onnx")


def build_repo(root, mlp_onnx):
    add_model(mlp_onnx, root, "mlp", EntryOptions(max_batch_size=8, max_queue_delay_us=500))
    add_model(mlp_onnx, root, "mlp_nobatch", EntryOptions(max_batch_size=8, dynamic_batching=False))
    add_model(mlp_onnx, root, "mlp_py", EntryOptions(max_batch_size=8, backend="python"))
    bad = root / "broken_config"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text(
        'name: "broken_config"\nplatform: "onnxruntime_onnx"\nmax_batch_size: [oops\n'
    )
    bad = root / "broken_onnx"
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "model.onnx").write_bytes(b"this is not an onnx protobuf")
    (bad / "config.pbtxt").write_text('name: "broken_onnx"\nplatform: "onnxruntime_onnx"\n')
    return root


class SlowModel:
    """y = 2x after a sleep; records the batch sizes it saw."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, inputs):
        time.sleep(self.delay)
        with self.lock:
            self.batches.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


def add_python_models(core):
    io = ([("x", "FP32", [4])], [("y", "FP32", [4])])
    core.add_python_model(
        "double",
        lambda d: {"y": d["x"] * 2},
        *io,
        max_batch_size=16,
        dynamic_batching={"max_queue_delay_microseconds": 2000},
    )
    core.add_python_model(
        "slow",
        SlowModel(0.3),
        *io,
        max_batch_size=4,
        dynamic_batching={"default_queue_policy": {"max_queue_size": 3}},
    )
    core.add_python_model("crash", lambda d: 1 / 0, *io, max_batch_size=4)


@pytest.fixture(scope="session")
def repo(tmp_path_factory, mlp_onnx):
    return build_repo(tmp_path_factory.mktemp("repo"), mlp_onnx)


def make_server(repo, grpc_frontend: str = "h2"):
    config = ServerConfig(
        repository=repo,
        grpc_port=0,
        http_port=0,
        metrics_port=0,
        max_message_bytes=4 * 1024 * 1024,
        drain_timeout_s=10,
        grpc_frontend=grpc_frontend,
    )
    return BackgroundServer(config, setup=add_python_models)


@pytest.fixture(scope="session")
def server(repo):
    with make_server(repo) as srv:
        yield srv


@pytest.fixture
def x8():
    return np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
