"""Model repository in Triton's layout.

```
REPO/<model>/config.pbtxt          model_config.ModelConfig in protobuf text format
REPO/<model>/<version>/model.onnx  (onnxruntime), model.lightspeed/ (compiled dir), model.py (python)
```

The config is parsed with the ``model_config`` protobuf shipped in
``tritonclient``, so anything Triton accepts parses the same way here, and
anything malformed is reported with protobuf's own line/column message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightspeed.serve.ensemble import ensemble_steps
from lightspeed.serve.errors import ServeError, invalid, not_found
from lightspeed.serve.protocol import DATATYPE_TO_NUMPY, config_type_to_datatype
from lightspeed.serve.ragged import ragged_spec
from lightspeed.serve.sequence import sequence_policy

# platform (Triton's older spelling) -> backend name
PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime"}
DEFAULT_FILENAMES = {
    "onnxruntime": "model.onnx",
    "lightspeed": "model.lightspeed",
    "python": "model.py",
}
SUPPORTED_BACKENDS = (*DEFAULT_FILENAMES, "ensemble")


def model_config_pb2():
    """The generated ``model_config`` protobuf module (from tritonclient)."""
    from lightspeed.errors import require

    return require("tritonclient.grpc.model_config_pb2", "serve", "the model repository")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: protocol datatype and dims without the batch dimension."""

    name: str
    datatype: str
    dims: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return DATATYPE_TO_NUMPY[self.datatype]


def parse_config_text(text: str, where: str):
    """Parse config.pbtxt text into a ModelConfig; malformed text -> INVALID_ARGUMENT."""
    from google.protobuf import text_format

    mc = model_config_pb2()
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise invalid(f"{where}: malformed config.pbtxt: {exc}") from None
    return config


def backend_name(config) -> str:
    """The backend a config asks for (``backend`` wins over ``platform``)."""
    if config.backend:
        return config.backend
    if config.platform:
        return PLATFORM_BACKENDS.get(config.platform, config.platform)
    return ""


def tensor_specs(tensors, what: str, model: str) -> list[TensorSpec]:
    """TensorSpecs from ModelInput/ModelOutput messages, checking names and types."""
    mc = model_config_pb2()
    specs = []
    seen = set()
    for t in tensors:
        if not t.name:
            raise invalid(f"model '{model}': an {what} in config.pbtxt has no name")
        if t.name in seen:
            raise invalid(f"model '{model}': {what} '{t.name}' is declared twice")
        seen.add(t.name)
        type_name = mc.DataType.Name(t.data_type)
        datatype = config_type_to_datatype(type_name)
        if datatype not in DATATYPE_TO_NUMPY:
            raise invalid(
                f"model '{model}': {what} '{t.name}' has data_type {type_name}, which this "
                "server does not serve; use a numeric TYPE_*"
            )
        dims = tuple(int(d) for d in t.dims)
        if any(d < -1 or d == 0 for d in dims):
            raise invalid(
                f"model '{model}': {what} '{t.name}' has dims {list(dims)}; "
                "each dim must be positive or -1"
            )
        specs.append(TensorSpec(t.name, datatype, dims))
    return specs


def _unsupported_fields(config) -> list[tuple[str, str]]:
    """(field, what to do) for each config field that would change what Triton does here.

    Triton would honour these; serving the model while ignoring them would answer
    differently from Triton, so the load fails instead, naming the field.
    """
    found = []
    if config.HasField("model_transaction_policy") and config.model_transaction_policy.decoupled:
        found.append(
            (
                "model_transaction_policy.decoupled",
                "decoupled models are not supported; each request gets exactly one response",
            )
        )
    for g in config.instance_group:
        if g.HasField("rate_limiter"):
            found.append(
                (
                    "instance_group.rate_limiter",
                    "the rate limiter is not supported; "
                    "bound concurrency with instance_group count and max_queue_size",
                )
            )
    return found


def refuse_unsupported(config, name: str) -> None:
    found = _unsupported_fields(config)
    if found:
        field, todo = found[0]
        more = f" (also set: {', '.join(f for f, _ in found[1:])})" if len(found) > 1 else ""
        raise invalid(f"model '{name}': config.pbtxt sets {field}: {todo}{more}")


def validate_config(config, name: str) -> None:
    """Check the parts of a ModelConfig this server relies on (raises INVALID_ARGUMENT)."""
    if config.name and config.name != name:
        raise invalid(
            f"model '{name}': config.pbtxt says name \"{config.name}\"; it must match the "
            "directory name"
        )
    config.name = name
    backend = backend_name(config)
    if not backend:
        raise invalid(
            f"model '{name}': config.pbtxt sets neither backend nor platform; add e.g. "
            'platform: "onnxruntime_onnx" or backend: "lightspeed"'
        )
    if backend not in SUPPORTED_BACKENDS:
        raise invalid(
            f"model '{name}': backend '{backend}' is not available; this server has "
            + ", ".join(SUPPORTED_BACKENDS)
        )
    if config.max_batch_size < 0:
        raise invalid(f"model '{name}': max_batch_size must be >= 0")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            raise invalid(
                f"model '{name}': dynamic_batching needs max_batch_size > 0 "
                "(the model must accept a batch dimension)"
            )
        db = config.dynamic_batching
        levels = db.priority_levels
        if levels and not 1 <= db.default_priority_level <= levels:
            raise invalid(
                f"model '{name}': default_priority_level {db.default_priority_level} must be "
                f"in 1..priority_levels ({levels})"
            )
        for level in db.priority_queue_policy:
            if not 1 <= level <= levels:
                raise invalid(
                    f"model '{name}': priority_queue_policy for level {level}, but "
                    f"priority_levels is {levels}"
                )
        for p in db.preferred_batch_size:
            if p <= 0 or p > config.max_batch_size:
                raise invalid(
                    f"model '{name}': preferred_batch_size {p} must be in "
                    f"1..max_batch_size ({config.max_batch_size})"
                )
    for group in config.instance_group:
        if group.count < 0:
            raise invalid(f"model '{name}': instance_group count must be >= 0")
    refuse_unsupported(config, name)
    tensor_specs(config.input, "input", name)
    tensor_specs(config.output, "output", name)
    if backend == "ensemble":
        if not len(config.input) or not len(config.output):
            raise invalid(f"ensemble '{name}': config.pbtxt must list its inputs and outputs")
        ensemble_steps(config, name)
    elif config.HasField("ensemble_scheduling"):
        raise invalid(
            f"model '{name}': ensemble_scheduling needs platform: \"ensemble\" "
            f"(it has backend '{backend}')"
        )
    ragged_spec(config, name, model_config_pb2())
    sequence_policy(config, name, model_config_pb2())


def select_versions(config, available: list[int]) -> list[int]:
    """Apply the version policy (latest N [default 1] / all / specific) to version numbers."""
    available = sorted(available)
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return available
    if which == "specific":
        wanted = set(int(v) for v in policy.specific.versions)
        return [v for v in available if v in wanted]
    n = policy.latest.num_versions if which == "latest" else 1
    return available[-max(n, 1) :]


class ModelRepository:
    """A directory of models in Triton's layout (read-only view; loading lives in the core)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ServeError(
                "NOT_FOUND",
                f"model repository {self.root} is not a directory; create it or pass the "
                "right path (lightspeed repo add MODEL REPO --name N creates entries)",
            )

    def model_names(self) -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def model_dir(self, name: str) -> Path:
        path = self.root / name
        if not name or "/" in name or name.startswith(".") or not path.is_dir():
            raise not_found(f"model '{name}' is not in the repository {self.root}")
        return path

    def versions(self, name: str) -> list[int]:
        return sorted(
            int(p.name) for p in self.model_dir(name).iterdir() if p.is_dir() and p.name.isdigit()
        )

    def read_config(self, name: str):
        """The validated ModelConfig of a model (inputs/outputs may still be empty)."""
        path = self.model_dir(name) / "config.pbtxt"
        if path.is_file():
            config = parse_config_text(path.read_text(), str(path))
        else:
            raise invalid(
                f"model '{name}': {path} is missing; write one (lightspeed repo add does) "
                "with at least a backend or platform"
            )
        validate_config(config, name)
        return config

    def version_path(self, name: str, version: int, config) -> Path:
        """Where a version's model file lives (``default_model_filename`` or the backend default)."""
        filename = config.default_model_filename or DEFAULT_FILENAMES[backend_name(config)]
        return self.model_dir(name) / str(version) / filename
