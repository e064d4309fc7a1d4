"""``lightspeed repo add``: write a model into a repository in Triton's layout.

An ONNX model becomes ``platform: "onnxruntime_onnx"`` (what a real Triton
with the onnxruntime backend loads) or, with ``backend="python"``, a Triton
python-backend ``model.py`` that runs onnxruntime (for Triton builds without
the onnxruntime backend, such as the one in the nvidia-pytriton wheel). A
compiled lightspeed directory becomes a ``backend: "lightspeed"`` entry.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lightspeed.errors import ArtifactError, ConfigError, ModelError
from lightspeed.serve.repository import TensorSpec, model_config_pb2

_ONNX_TYPES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
}


@dataclass
class EntryOptions:
    """What goes into config.pbtxt besides the tensors."""

    max_batch_size: int | None = None  # None: 1024 if the model has a free batch dim, else 0
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    preferred_batch_sizes: list[int] = field(default_factory=list)
    instances: int = 1
    kind: str = "cpu"  # cpu | gpu | auto
    version: int | None = None  # None: one more than the highest existing version
    backend: str = ""  # "" (by model kind) | onnxruntime | python | lightspeed


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec], bool]:
    """Inputs/outputs of an ONNX file with dims as stored, and whether dim 0 is free (batch)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path} is not a readable ONNX file: {exc}") from None
    inits = {i.name for i in model.graph.initializer}

    def specs(values):
        out = []
        for v in values:
            if v.name in inits:
                continue
            tt = v.type.tensor_type
            if tt.elem_type not in _ONNX_TYPES:
                raise ModelError(f"{path}: tensor '{v.name}' has an unsupported element type")
            dims = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                for d in tt.shape.dim
            )
            out.append(TensorSpec(v.name, _ONNX_TYPES[tt.elem_type], dims))
        return out

    ins, outs = specs(model.graph.input), specs(model.graph.output)
    batch_free = bool(ins) and all(s.dims and s.dims[0] == -1 for s in ins)
    return ins, outs, batch_free


def _config(name: str, backend_kind: str, ins, outs, max_batch: int, opts: EntryOptions):
    mc = model_config_pb2()
    cfg = mc.ModelConfig(name=name, max_batch_size=max_batch)
    if backend_kind == "onnxruntime":
        cfg.platform = "onnxruntime_onnx"
    else:
        cfg.backend = backend_kind
    strip = max_batch > 0
    for field_name, specs in (("input", ins), ("output", outs)):
        for s in specs:
            t = getattr(cfg, field_name).add()
            t.name = s.name
            t.data_type = mc.DataType.Value(f"TYPE_{s.datatype}")
            dims = s.dims[1:] if strip else s.dims
            t.dims.extend(dims if dims else [1])
    if opts.dynamic_batching and max_batch > 0:
        db = cfg.dynamic_batching
        db.max_queue_delay_microseconds = opts.max_queue_delay_us
        for p in opts.preferred_batch_sizes:
            if not 0 < p <= max_batch:
                raise ConfigError(
                    f"preferred batch size {p} must be between 1 and max_batch_size {max_batch}"
                )
        db.preferred_batch_size.extend(opts.preferred_batch_sizes)
    kinds = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": "KIND_AUTO"}
    if opts.kind not in kinds:
        raise ConfigError(f"instance kind must be one of {list(kinds)}, got {opts.kind!r}")
    group = cfg.instance_group.add()
    group.count = opts.instances
    group.kind = mc.ModelInstanceGroup.Kind.Value(kinds[opts.kind])
    return cfg


def _python_model_source(site_packages: list[str]) -> str:
    # Written as plain text so the same file runs in real Triton's python backend
    # (whose stub ignores PYTHONPATH) and in lightspeed's in-process shim.
    return f'''"""Triton python-backend model that runs model.onnx with onnxruntime (lightspeed repo add)."""

import json
import os
import sys

# The Triton python stub ignores PYTHONPATH: add the site-packages holding onnxruntime,
# LIGHTSPEED_SITE_PACKAGES first (the server's own, whose numpy matches the stub's build)
_wanted = os.environ.get("LIGHTSPEED_SITE_PACKAGES", "").split(os.pathsep) + {site_packages!r}
sys.path[0:0] = [_p for _p in dict.fromkeys(_wanted) if _p and os.path.isdir(_p) and _p not in sys.path]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        here = os.path.dirname(os.path.abspath(__file__))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {{n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}}
            results = self.session.run(self.outputs, feed)
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(r)) for n, r in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''


def add_model(source: str | Path, repo: str | Path, name: str, opts: EntryOptions) -> Path:
    """Copy ``source`` (ONNX file or compiled dir) into ``repo/name``; return the version dir."""
    from google.protobuf import text_format

    source, repo = Path(source), Path(repo)
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"model name {name!r} is not a valid directory name")
    if not source.exists():
        raise ModelError(
            f"{source} does not exist; pass an .onnx file or a compiled model directory"
        )
    model_dir = repo / name
    existing = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        if model_dir.is_dir()
        else []
    )
    version = opts.version if opts.version is not None else max(existing, default=0) + 1
    if version <= 0:
        raise ConfigError("version must be a positive integer")
    vdir = model_dir / str(version)
    if vdir.exists():
        raise ConfigError(f"{vdir} already exists; pick another --version or remove it")

    if source.is_dir():
        from lightspeed.serve.backends import LightspeedBackend

        try:
            import lightspeed.artifact as artifact

            if not artifact.is_compiled_dir(source):
                raise ArtifactError(f"{source} is not a lightspeed compiled model directory")
        except ImportError:
            pass
        backend = LightspeedBackend(source)
        ins, outs = backend.io()
        ins = [TensorSpec(s.name, s.datatype, (-1, *s.dims)) for s in ins]
        outs = [TensorSpec(s.name, s.datatype, (-1, *s.dims)) for s in outs]
        kind, batch_free = "lightspeed", True
    elif source.suffix == ".onnx":
        ins, outs, batch_free = onnx_io(source)
        kind = opts.backend or "onnxruntime"
        if kind not in ("onnxruntime", "python"):
            raise ConfigError(f"an ONNX model is served by onnxruntime or python, not {kind!r}")
    else:
        raise ModelError(f"{source}: expected an .onnx file or a compiled model directory")

    max_batch = opts.max_batch_size
    if max_batch is None:
        max_batch = 1024 if batch_free else 0
    if max_batch > 0 and not batch_free:
        raise ConfigError(
            f"{source} has a fixed first dimension, so it cannot take a batch; "
            "use --max-batch-size 0"
        )
    cfg = _config(name, kind, ins, outs, max_batch, opts)

    vdir.mkdir(parents=True)
    if kind == "lightspeed":
        shutil.copytree(source, vdir / "model.lightspeed")
    else:
        shutil.copy2(source, vdir / "model.onnx")
        if kind == "python":
            import onnxruntime

            site = str(Path(onnxruntime.__file__).resolve().parent.parent)
            (vdir / "model.py").write_text(_python_model_source([site]))
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    return vdir
