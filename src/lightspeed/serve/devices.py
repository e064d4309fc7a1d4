"""Where a model's instances run: instance groups -> devices -> onnxruntime providers.

Triton's rules, kept: a KIND_GPU group puts ``count`` instances on *each* GPU
it lists in ``gpus`` (all visible GPUs when it lists none); KIND_CPU groups run
on the CPU; KIND_AUTO means the GPU when there is one. GPU instances use
onnxruntime's CUDA execution provider on their device, or TensorRT's first when
``optimization.execution_accelerators`` asks for it. A GPU asked for but not
present fails the load, as in Triton: a GPU model silently served on a CPU
misleads every capacity plan made with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightspeed.serve.cuda_shm import CudaRuntime
from lightspeed.serve.errors import ServeError, invalid

CPU = -1  # device id of a CPU instance


@dataclass(frozen=True)
class Placement:
    """One instance: its device (CPU or a GPU id) and the providers, best first."""

    device: int
    providers: tuple  # onnxruntime providers: names or (name, options)


def _accelerators(config, model: str, available: set[str]) -> tuple[list, list]:
    """(gpu providers, cpu providers) asked for by ``optimization.execution_accelerators``."""
    acc = config.optimization.execution_accelerators
    gpu, cpu = [], []
    for a in acc.gpu_execution_accelerator:
        params = dict(a.parameters)
        if a.name == "tensorrt":
            if "TensorrtExecutionProvider" not in available:
                raise invalid(
                    f"model '{model}': optimization asks for the tensorrt accelerator, but "
                    "onnxruntime has no TensorrtExecutionProvider here (install onnxruntime-gpu "
                    "with TensorRT, or remove the accelerator)"
                )
            options: dict = {}
            mode = params.pop("precision_mode", "FP32")
            if mode not in ("FP32", "FP16"):
                raise invalid(f"model '{model}': tensorrt precision_mode {mode} is not FP32/FP16")
            options["trt_fp16_enable"] = mode == "FP16"
            if "max_workspace_size_bytes" in params:
                options["trt_max_workspace_size"] = int(params.pop("max_workspace_size_bytes"))
            if params:
                raise invalid(
                    f"model '{model}': tensorrt accelerator parameters {sorted(params)} are not "
                    "supported (precision_mode and max_workspace_size_bytes are)"
                )
            gpu.append(("TensorrtExecutionProvider", options))
        elif a.name == "cuda":
            if params:
                raise invalid(
                    f"model '{model}': cuda accelerator parameters {sorted(params)} are not "
                    "supported"
                )
        else:
            raise invalid(
                f"model '{model}': gpu_execution_accelerator '{a.name}' is not supported "
                "(tensorrt and cuda are)"
            )
    for a in acc.cpu_execution_accelerator:
        provider = {"openvino": "OpenVINOExecutionProvider"}.get(a.name)
        if provider is None or provider not in available:
            raise invalid(
                f"model '{model}': cpu_execution_accelerator '{a.name}' is not available here "
                f"(onnxruntime providers: {sorted(available)})"
            )
        cpu.append(provider)
    return gpu, cpu


def gpu_count(available: set[str]) -> int:
    """Visible GPUs (0 unless onnxruntime has its CUDA provider and libcudart finds devices)."""
    if "CUDAExecutionProvider" not in available:
        return 0
    try:
        return CudaRuntime.load().devices
    except ServeError:
        return 0


def placements(config, gpu_count: int, available: set[str], kinds) -> list[Placement]:
    """One Placement per instance of an onnxruntime model.

    ``kinds`` is ``ModelInstanceGroup`` (for its KIND_* values); ``available`` the
    providers onnxruntime has; ``gpu_count`` the visible GPUs.
    """
    model = config.name
    has_cuda = "CUDAExecutionProvider" in available and gpu_count > 0
    gpu_head, cpu_head = _accelerators(config, model, available)

    def on_gpu(device: int) -> Placement:
        options = {"device_id": device}
        trt = tuple((n, {**o, "device_id": device}) for n, o in gpu_head)
        return Placement(device, (*trt, ("CUDAExecutionProvider", options), "CPUExecutionProvider"))

    on_cpu = Placement(CPU, (*cpu_head, "CPUExecutionProvider"))
    groups = list(config.instance_group) or [None]  # Triton's default: one KIND_AUTO group
    out: list[Placement] = []
    for g in groups:
        kind = kinds.KIND_AUTO if g is None else g.kind
        count = 1 if g is None or g.count <= 0 else g.count
        if kind == kinds.KIND_CPU or (kind == kinds.KIND_AUTO and not has_cuda):
            out += [on_cpu] * count
            continue
        if kind not in (kinds.KIND_GPU, kinds.KIND_AUTO):
            raise invalid(f"model '{model}': instance_group kind {kind} is not supported")
        if not has_cuda:
            raise invalid(
                f"model '{model}': instance_group kind KIND_GPU, but onnxruntime has no "
                "CUDAExecutionProvider or no GPU is visible here (install onnxruntime-gpu and "
                "a CUDA driver, or use KIND_CPU / KIND_AUTO)"
            )
        devices = list(g.gpus) if g is not None and len(g.gpus) else list(range(gpu_count))
        for d in devices:
            if not 0 <= d < gpu_count:
                raise invalid(
                    f"model '{model}': instance_group lists GPU {d}, but {gpu_count} GPU(s) "
                    "are visible"
                )
            out += [on_gpu(d)] * count
    return out
