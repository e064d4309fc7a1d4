"""Instance placement on devices and onnxruntime providers (serve/devices.py), Triton's rules."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from lightspeed.serve.devices import CPU, placements
from lightspeed.serve.errors import ServeError
from lightspeed.serve.repository import model_config_pb2

CUDA = {"CUDAExecutionProvider", "CPUExecutionProvider"}
TRT = CUDA | {"TensorrtExecutionProvider"}


def config(text: str):
    mc = model_config_pb2()
    c = mc.ModelConfig()
    text_format.Parse('name: "m"\nplatform: "onnxruntime_onnx"\n' + text, c)
    return c, mc.ModelInstanceGroup


def devices(where) -> list[int]:
    return [p.device for p in where]


def test_gpu_groups_put_count_instances_on_each_listed_gpu():
    c, kinds = config("instance_group [{ kind: KIND_GPU count: 2 gpus: [0, 2] }]")
    where = placements(c, 3, CUDA, kinds)
    assert devices(where) == [0, 0, 2, 2]
    assert where[2].providers[0] == ("CUDAExecutionProvider", {"device_id": 2})
    assert where[2].providers[-1] == "CPUExecutionProvider"
    # no gpus listed: every visible GPU
    c, kinds = config("instance_group [{ kind: KIND_GPU }, { kind: KIND_CPU count: 2 }]")
    assert devices(placements(c, 2, CUDA, kinds)) == [0, 1, CPU, CPU]


def test_auto_is_the_gpu_when_there_is_one_and_the_cpu_otherwise():
    c, kinds = config("")  # Triton's default group: one KIND_AUTO instance
    assert devices(placements(c, 1, CUDA, kinds)) == [0]
    assert devices(placements(c, 0, CUDA, kinds)) == [CPU]
    assert devices(placements(c, 2, {"CPUExecutionProvider"}, kinds)) == [CPU]


def test_tensorrt_accelerator_goes_first_with_its_options():
    c, kinds = config(
        "instance_group [{ kind: KIND_GPU gpus: [1] }]\n"
        "optimization { execution_accelerators { gpu_execution_accelerator: "
        '[{ name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } }] } }'
    )
    (p,) = placements(c, 2, TRT, kinds)
    assert p.providers[0] == (
        "TensorrtExecutionProvider",
        {"trt_fp16_enable": True, "device_id": 1},
    )
    assert p.providers[1][0] == "CUDAExecutionProvider"


@pytest.mark.parametrize(
    ("text", "n_gpus", "available", "message"),
    [
        ("instance_group [{ kind: KIND_GPU }]", 0, CUDA, "KIND_GPU"),
        (
            "instance_group [{ kind: KIND_GPU }]",
            2,
            {"CPUExecutionProvider"},
            "CUDAExecutionProvider",
        ),
        ("instance_group [{ kind: KIND_GPU gpus: [3] }]", 2, CUDA, "lists GPU 3, but 2 GPU"),
        (
            'optimization { execution_accelerators { gpu_execution_accelerator: [{ name: "tensorrt" }] } }',
            1,
            CUDA,
            "no TensorrtExecutionProvider",
        ),
        (
            'optimization { execution_accelerators { gpu_execution_accelerator: [{ name: "magic" }] } }',
            1,
            CUDA,
            "'magic' is not supported",
        ),
        (
            'optimization { execution_accelerators { cpu_execution_accelerator: [{ name: "openvino" }] } }',
            0,
            CUDA,
            "'openvino' is not available",
        ),
    ],
)
def test_what_cannot_be_placed_fails_the_load_by_name(text, n_gpus, available, message):
    c, kinds = config(text)
    with pytest.raises(ServeError, match=message):
        placements(c, n_gpus, available, kinds)
