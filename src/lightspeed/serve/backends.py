"""Backends: the one small interface every model runtime implements.

A backend instance is created per model instance (``instance_group.count``)
and its :meth:`Backend.execute` runs on a worker thread with a whole batch,
so it may block (onnxruntime and NumPy release the GIL while they compute).
Scheduling, batching, validation and statistics live outside backends.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from lightspeed.serve.errors import invalid
from lightspeed.serve.protocol import NUMPY_TO_DATATYPE
from lightspeed.serve.repository import TensorSpec

Arrays = dict[str, np.ndarray]


class Backend:
    """Runs batches for one model instance."""

    #: True when the model's first dimension is a batch dimension it can take any size of
    batchable: bool = True
    #: False when the backend cannot compute with NaN/Inf (fixed point): such requests are
    #: refused alone, before they join a batch
    finite_only: bool = False

    def io(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Inputs and outputs the model file declares (dims without batch), for autocomplete."""
        return [], []

    def execute(self, inputs: Mapping[str, np.ndarray], outputs: list[str]) -> Arrays:
        """Run one batch. ``outputs`` lists the output names to return."""
        raise NotImplementedError

    def shape_hint(self, name: str, shape: tuple[int, ...]) -> str | None:
        """Why input ``name`` of ``shape`` (batch first) does not fit, when the model knows
        more than its dims (a compiled sequence length); None to keep the plain message."""
        return None

    def close(self) -> None:
        """Release resources (called after the last execution of this instance)."""


# --------------------------------------------------------------------- onnxruntime
_ORT_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
}


def _ort_dims(shape, batched: bool) -> tuple[int, ...]:
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    return tuple(dims[1:] if batched else dims)


class OnnxRuntimeBackend(Backend):
    """onnxruntime session; CUDA execution provider for GPU instances when available."""

    def __init__(
        self,
        path: Path,
        *,
        providers: Sequence = ("CPUExecutionProvider",),
        threads: int = 1,
        batched: bool = True,
    ):
        from lightspeed.errors import require

        ort = require("onnxruntime", "serve", "the onnxruntime backend")
        if not path.is_file():
            raise invalid(f"ONNX file {path} is missing; put the model at that path")
        opts = ort.SessionOptions()
        # one thread per instance: parallelism comes from instance_group.count, and
        # extra intra-op threads only fight over the cores with the network loop
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # providers come from serve/devices.py (instance groups, accelerators, GPU ids)
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise invalid(f"ONNX file {path} failed to load in onnxruntime: {exc}") from None
        self.providers = self._session.get_providers()
        self._batched = batched

    def io(self):
        def specs(values):
            out = []
            for v in values:
                if v.type not in _ORT_TYPES:
                    raise invalid(f"ONNX tensor '{v.name}' has unsupported type {v.type}")
                out.append(
                    TensorSpec(v.name, _ORT_TYPES[v.type], _ort_dims(v.shape, self._batched))
                )
            return out

        return specs(self._session.get_inputs()), specs(self._session.get_outputs())

    def execute(self, inputs, outputs):
        results = self._session.run(outputs, dict(inputs))
        return dict(zip(outputs, results, strict=True))


# --------------------------------------------------------------------- lightspeed emulator
class LightspeedBackend(Backend):
    """The bit-exact fixed-point emulator on a compiled model directory ("FPGA emulation")."""

    finite_only = True

    def __init__(self, path: Path, *, output_dtypes: Mapping[str, np.dtype] | None = None):
        if not path.is_dir():
            raise invalid(
                f"compiled model directory {path} is missing; create it with QuantizedModel.save"
            )
        # imported on first use: importing lightspeed.serve stays light (no emulator) for
        # processes that never load a compiled model, such as the --workers parent
        from lightspeed.emulate import load_jit
        from lightspeed.quantize import load_compiled

        try:
            self._model = load_compiled(str(path))
        except Exception as exc:
            raise invalid(f"compiled model {path} failed to load: {exc}") from None
        self._output_dtypes = dict(output_dtypes or {})
        # a server lives long: load the optional numba kernels now (~0.3 s, once per
        # process) so that every request size uses them; same bits either way
        load_jit()

    @property
    def index_limits(self) -> dict[str, int]:
        """Index inputs (edge lists) -> the compiled limit; the server checks each request."""
        from lightspeed.ops.gather import index_limits

        return index_limits(self._model.graph)

    def io(self):
        m = self._model
        limits = self.index_limits
        ins = [TensorSpec(n, "INT64" if n in limits else "FP32", tuple(m.input_shapes[n]))
               for n in m.input_names]  # fmt: skip
        outs = [TensorSpec(n, "FP64", tuple(m.output_shapes[n])) for n in m.output_names]
        return ins, outs

    def shape_hint(self, name, shape):
        from lightspeed.ops.recurrent import sequence_mismatch

        return sequence_mismatch(self._model.graph, name, tuple(shape))

    def execute(self, inputs, outputs):
        result = self._model.predict_dict(dict(inputs))
        out = {}
        for name in outputs:
            arr = result[name]
            dtype = self._output_dtypes.get(name)
            out[name] = arr if dtype is None or arr.dtype == dtype else arr.astype(dtype)
        return out


# --------------------------------------------------------------------- python
class PythonCallableBackend(Backend):
    """Custom Python code: ``fn(inputs: dict[str, ndarray]) -> dict[str, ndarray]``."""

    def __init__(self, fn: Callable[[Arrays], Mapping[str, np.ndarray]]):
        self._fn = fn

    def execute(self, inputs, outputs):
        result = self._fn(dict(inputs))
        missing = [n for n in outputs if n not in result]
        if missing:
            raise RuntimeError(f"the python model returned no output named {missing}")
        return {n: np.asarray(result[n]) for n in outputs}


class TritonPythonBackend(Backend):
    """A Triton python-backend ``model.py`` (class TritonPythonModel), run in-process.

    The module sees ``triton_python_backend_utils`` as lightspeed's small
    compatible subset, so the same repository entry loads here and in Triton.
    The merged batch arrives as one request.
    """

    def __init__(self, model_cls, config, path: Path, version: int):
        import json

        from google.protobuf import json_format

        from lightspeed.serve import pb_utils

        self._pb = pb_utils
        self._model = model_cls()
        if hasattr(self._model, "initialize"):
            cfg = json_format.MessageToJson(config, preserving_proto_field_name=True)
            self._model.initialize(
                {
                    "model_config": cfg,
                    "model_name": config.name,
                    "model_version": str(version),
                    "model_repository": str(path.parent.parent),
                    "model_instance_kind": "CPU",
                    "model_instance_name": f"{config.name}_0",
                    "model_instance_device_id": "0",
                }
            )
        self._json = json

    def execute(self, inputs, outputs):
        pb = self._pb
        request = pb.InferenceRequest(
            inputs=[pb.Tensor(n, np.ascontiguousarray(a)) for n, a in inputs.items()],
            requested_output_names=list(outputs),
        )
        (response,) = self._model.execute([request])
        if response.has_error():
            raise RuntimeError(response.error().message())
        got = {t.name(): t.as_numpy() for t in response.output_tensors()}
        missing = [n for n in outputs if n not in got]
        if missing:
            raise RuntimeError(f"model.py returned no output named {missing}")
        return {n: got[n] for n in outputs}

    def close(self):
        if hasattr(self._model, "finalize"):
            self._model.finalize()


def load_python_module(path: Path, unique: str):
    """Import ``model.py`` under a unique module name with pb_utils importable."""
    from lightspeed.serve import pb_utils

    if not path.is_file():
        raise invalid(f"python model file {path} is missing")
    sys.modules.setdefault("triton_python_backend_utils", pb_utils)
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise invalid(f"{path} is not an importable python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise invalid(f"python model {path} failed to import: {exc!r}") from None
    return module


def datatype_of(arr: np.ndarray) -> str:
    return NUMPY_TO_DATATYPE[arr.dtype]
