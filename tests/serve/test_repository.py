"""config.pbtxt parsing, version policies, `lightspeed repo add`, and the emulator backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lightspeed.cli import main as cli_main
from lightspeed.serve.errors import ServeError
from lightspeed.serve.repository import ModelRepository, parse_config_text, select_versions
from lightspeed.serve.server import BackgroundServer, ServerConfig
from tests.serve.serve_helpers import mlp_numpy


def _config(text: str):
    return parse_config_text(text, "test")


def test_parses_a_triton_config():
    config = _config(
        """
        name: "jets"
        platform: "onnxruntime_onnx"
        max_batch_size: 128
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 16 ] } ]
        output [ { name: "y" data_type: TYPE_FP32 dims: [ 5 ] } ]
        dynamic_batching {
          preferred_batch_size: [ 32, 64 ]
          max_queue_delay_microseconds: 100
          preserve_ordering: true
          default_queue_policy { max_queue_size: 10 default_timeout_microseconds: 5000 }
        }
        instance_group [ { count: 2 kind: KIND_CPU } ]
        version_policy: { latest: { num_versions: 2 } }
        """
    )
    from lightspeed.serve.core import batching_policy

    p = batching_policy(config)
    assert (p.max_batch_size, p.dynamic, p.preferred) == (128, True, (32, 64))
    assert p.max_queue_delay_ns == 100_000 and p.preserve_ordering
    assert p.max_queue_size == 10 and p.default_timeout_ns == 5_000_000
    assert config.instance_group[0].count == 2
    assert select_versions(config, [1, 2, 3]) == [2, 3]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", [3]),
        ("version_policy: { all: {} }", [1, 2, 3]),
        ("version_policy: { specific: { versions: [1, 3] } }", [1, 3]),
        ("version_policy: { latest: { num_versions: 5 } }", [1, 2, 3]),
    ],
)
def test_version_policies(policy, expected):
    assert select_versions(_config(policy), [3, 1, 2]) == expected


def test_malformed_config_names_the_line():
    with pytest.raises(ServeError) as info:
        _config("max_batch_size: [oops")
    assert info.value.code == "INVALID_ARGUMENT" and "1:" in info.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name: "other" platform: "onnxruntime_onnx"', "must match the directory name"),
        ("max_batch_size: 4", "neither backend nor platform"),
        ('backend: "tensorrt"', "backend 'tensorrt' is not available"),
        (
            'platform: "onnxruntime_onnx" dynamic_batching {}',
            "dynamic_batching needs max_batch_size > 0",
        ),
        (
            'platform: "onnxruntime_onnx" max_batch_size: 4 '
            "dynamic_batching { preferred_batch_size: 8 }",
            "preferred_batch_size 8",
        ),
        (
            'platform: "onnxruntime_onnx" input [{ name: "s" data_type: TYPE_STRING dims: 1 }]',
            "TYPE_STRING",
        ),
    ],
)
def test_invalid_configs_are_rejected(tmp_path, text, message):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text(text)
    with pytest.raises(ServeError) as info:
        ModelRepository(tmp_path).read_config("m")
    assert info.value.code == "INVALID_ARGUMENT" and message in info.value.message


def test_missing_repository_is_reported(tmp_path):
    with pytest.raises(ServeError, match="not a directory"):
        ModelRepository(tmp_path / "nope")


def test_repo_add_cli_writes_a_triton_entry(tmp_path, mlp_onnx, capsys):
    repo = tmp_path / "repo"
    rc = cli_main(
        ["repo", "add", str(mlp_onnx), str(repo), "--name", "jets", "--max-batch-size", "64",
         "--preferred-batch-size", "16", "--max-queue-delay-us", "200", "--instances", "2"]
    )  # fmt: skip
    assert rc == 0 and "jets" in capsys.readouterr().out
    assert (repo / "jets" / "1" / "model.onnx").read_bytes() == mlp_onnx.read_bytes()
    config = text_format.Parse((repo / "jets" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.name == "jets" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("x", mc.TYPE_FP32, [16])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("y", mc.TYPE_FP32, [5])
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 200
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    # a second add becomes version 2; a clash is a clear one-line error
    assert cli_main(["repo", "add", str(mlp_onnx), str(repo), "--name", "jets"]) == 0
    assert (repo / "jets" / "2" / "model.onnx").exists()
    assert (
        cli_main(["repo", "add", str(mlp_onnx), str(repo), "--name", "jets", "--version", "2"]) == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["repo", "add", str(tmp_path / "missing.onnx"), str(repo), "--name", "z"]) == 2


def test_repo_add_fixed_batch_model(tmp_path):
    from tests.serve.serve_helpers import write_mlp_onnx

    fixed = write_mlp_onnx(tmp_path / "fixed.onnx", batch_dim=1)
    assert cli_main(["repo", "add", str(fixed), str(tmp_path / "r"), "--name", "f"]) == 0
    config = text_format.Parse(
        (tmp_path / "r" / "f" / "config.pbtxt").read_text(), mc.ModelConfig()
    )
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 16]
    assert not config.HasField("dynamic_batching")
    assert (
        cli_main(["repo", "add", str(fixed), str(tmp_path / "r"), "--name", "g",
                  "--max-batch-size", "4"])
        == 2
    )  # fmt: skip


def test_config_without_tensors_is_completed_from_onnx(tmp_path, mlp_onnx):
    (tmp_path / "auto" / "1").mkdir(parents=True)
    (tmp_path / "auto" / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    (tmp_path / "auto" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
    )
    import tritonclient.grpc as grpcclient

    cfg = ServerConfig(repository=tmp_path, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg) as srv:
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        config = c.get_model_config("auto").config
        assert [(t.name, list(t.dims)) for t in config.input] == [("x", [16])]
        x = np.ones((3, 16), np.float32)
        i = grpcclient.InferInput("x", [3, 16], "FP32")
        i.set_data_from_numpy(x)
        np.testing.assert_allclose(c.infer("auto", [i]).as_numpy("y"), mlp_numpy(x), rtol=1e-5)
        c.close()


def test_config_tensor_mismatch_with_onnx_is_reported(tmp_path, mlp_onnx):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    (tmp_path / "m" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx" max_batch_size: 4 '
        'input [{ name: "x" data_type: TYPE_INT32 dims: 16 }] '
        'output [{ name: "y" data_type: TYPE_FP32 dims: 5 }]'
    )
    cfg = ServerConfig(repository=tmp_path, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg) as srv:
        index = srv.server.core.index()
    assert index[0]["state"] == "UNAVAILABLE"
    assert "TYPE_INT32 in config.pbtxt but TYPE_FP32 in the model file" in index[0]["reason"]


def test_emulator_backend_is_bit_exact(tmp_path, mlp_onnx):
    lightspeed = pytest.importorskip("lightspeed")
    if not hasattr(lightspeed, "load_compiled"):
        pytest.skip("the lightspeed core (load_compiled) is not in this build")
    import tritonclient.grpc as grpcclient

    rng = np.random.default_rng(3)
    calib = rng.normal(size=(500, 16)).astype(np.float32)
    q = lightspeed.quantize(lightspeed.load(str(mlp_onnx)), precision="auto", calibration=calib)
    q.save(tmp_path / "compiled")
    repo = tmp_path / "repo"
    assert cli_main(["repo", "add", str(tmp_path / "compiled"), str(repo), "--name", "emu"]) == 0
    config = text_format.Parse((repo / "emu" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.backend == "lightspeed" and config.output[0].data_type == mc.TYPE_FP64
    x = rng.normal(size=(37, 16)).astype(np.float32)
    cfg = ServerConfig(repository=repo, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg) as srv:
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        i = grpcclient.InferInput(q.input_names[0], list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        y = c.infer("emu", [i]).as_numpy(q.output_names[0])
        c.close()
    expected = q.predict(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, expected)


def test_serve_cli_subprocess_stops_gracefully_on_sigterm(repo):
    import tritonclient.grpc as grpcclient

    from lightspeed.serve.peers import free_port

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightspeed.cli", "serve", str(repo), "--grpc-port", str(port),
         "--http-port", "0", "--metrics-port", "-1"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        end = time.monotonic() + 60  # a loaded CI box can take a while to import and load
        while time.monotonic() < end:
            try:
                if c.is_server_ready() and c.is_model_ready("mlp"):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        assert c.is_model_ready("mlp")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        err = proc.stderr.read()
        assert "server started" in err and "server stopped" in err
        assert 'msg="model load failed" model=broken_config' in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("snippet", "field"),
    [
        ("model_transaction_policy { decoupled: true }", "model_transaction_policy.decoupled"),
        (
            'instance_group [{ kind: KIND_CPU rate_limiter { resources [{ name: "r" count: 1 }] } }]',
            "rate_limiter",
        ),
    ],
)
def test_fields_that_change_semantics_fail_the_load(tmp_path, mlp_onnx, snippet, field):
    """Triton would honour these fields; ignoring them would answer differently."""
    d = tmp_path / "m"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    (d / "config.pbtxt").write_text(
        f'name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n{snippet}\n'
    )
    cfg = ServerConfig(repository=tmp_path, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg) as srv:
        index = srv.server.core.index()
    assert index[0]["state"] == "UNAVAILABLE"
    assert field in index[0]["reason"] and "not supported" in index[0]["reason"]


def test_gpu_instances_without_cuda_fail_the_load(tmp_path, mlp_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    d = tmp_path / "m"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.onnx").write_bytes(mlp_onnx.read_bytes())
    (d / "config.pbtxt").write_text(
        'name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        "instance_group [{ kind: KIND_GPU }]\n"
    )
    cfg = ServerConfig(repository=tmp_path, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg) as srv:
        index = srv.server.core.index()
    assert index[0]["state"] == "UNAVAILABLE"
    assert "KIND_GPU" in index[0]["reason"] and "CUDAExecutionProvider" in index[0]["reason"]
