"""A live lightspeed server (ONNX MLP + python models) for the client tests."""

from __future__ import annotations

import pytest

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("onnxruntime")

from lightspeed.serve.server import BackgroundServer, ServerConfig
from tests.serve.conftest import add_python_models, build_repo
from tests.serve.serve_helpers import write_mlp_onnx


@pytest.fixture(scope="session")
def client_onnx(tmp_path_factory):
    return write_mlp_onnx(tmp_path_factory.mktemp("client_onnx") / "mlp.onnx")


@pytest.fixture(scope="session")
def client_server(tmp_path_factory, client_onnx):
    repo = build_repo(tmp_path_factory.mktemp("client_repo"), client_onnx)
    config = ServerConfig(repository=repo, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(config, setup=add_python_models) as srv:
        yield srv
