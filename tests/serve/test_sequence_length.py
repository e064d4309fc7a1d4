"""A compiled recurrent model served by the emulator backend: a request whose sequence is
longer or shorter than the compiled length is INVALID_ARGUMENT naming the input and the
compiled length (gRPC and HTTP), and the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import lightspeed
from lightspeed.serve.repo_add import EntryOptions, add_model
from lightspeed.serve.server import BackgroundServer, ServerConfig

torch = pytest.importorskip("torch")

STEPS, FEATURES = 5, 3


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    torch.manual_seed(0)
    from tests.ops.test_recurrent import Tagger

    g = lightspeed.load(Tagger(torch.nn.GRU, features=FEATURES, hidden=4, classes=2).eval(),
                        input_shape=(STEPS, FEATURES))  # fmt: skip
    rng = np.random.default_rng(0)
    q = lightspeed.quantize(g, "auto", rng.normal(0, 1, (200, STEPS, FEATURES)))
    q.save(root / "compiled")
    add_model(root / "compiled", root / "repo", "gru", EntryOptions(max_batch_size=8))
    cfg = ServerConfig(repository=root / "repo", grpc_port=0, http_port=0, metrics_port=0)
    with BackgroundServer(cfg) as srv:
        yield srv, q


def _want(steps: int) -> str:
    return (
        f"input 'input' is a sequence of {steps} steps, but the model is compiled for "
        f"exactly {STEPS}"
    )


@pytest.mark.parametrize("steps", [8, 2])
def test_grpc_names_the_compiled_length(served, steps):
    srv, q = served
    c = grpcclient.InferenceServerClient(srv.grpc_url)
    try:
        bad = grpcclient.InferInput("input", [2, steps, FEATURES], "FP32")
        bad.set_data_from_numpy(np.zeros((2, steps, FEATURES), np.float32))
        with pytest.raises(InferenceServerException) as info:
            c.infer("gru", [bad])
        assert "INVALID_ARGUMENT" in str(info.value.status())
        msg = info.value.message()
        assert f"expected [-1, {STEPS}, {FEATURES}]" in msg and _want(steps) in msg
        # the right length still works, bit-exact with the emulator
        x = np.random.default_rng(1).normal(0, 1, (2, STEPS, FEATURES)).astype(np.float32)
        ok = grpcclient.InferInput("input", list(x.shape), "FP32")
        ok.set_data_from_numpy(x)
        got = c.infer("gru", [ok]).as_numpy(q.output_names[0])
        np.testing.assert_array_equal(got, q.predict(x))
    finally:
        c.close()


def test_http_is_400_naming_the_compiled_length(served):
    srv, _ = served
    c = httpclient.InferenceServerClient(srv.http_url)
    try:
        bad = httpclient.InferInput("input", [1, 9, FEATURES], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 9, FEATURES), np.float32))
        with pytest.raises(InferenceServerException) as info:
            c.infer("gru", [bad])
        assert info.value.status() == "400" and _want(9) in info.value.message()
        # another wrong dimension keeps the plain shape message
        feat = httpclient.InferInput("input", [1, STEPS, 2], "FP32")
        feat.set_data_from_numpy(np.zeros((1, STEPS, 2), np.float32))
        with pytest.raises(InferenceServerException) as info:
            c.infer("gru", [feat])
        assert "sequence" not in info.value.message()
        assert f"expected [-1, {STEPS}, {FEATURES}]" in info.value.message()
    finally:
        c.close()
