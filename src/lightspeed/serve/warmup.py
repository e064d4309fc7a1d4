"""``model_warmup``: requests every instance runs before the model is marked ready.

As in Triton, each sample names its inputs with ``zero_data``, ``random_data`` or
``input_data_file`` (raw bytes in ``<model dir>/warmup/``), runs ``count`` times
(at least once) on every instance, and a sample that fails makes the load fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightspeed.serve.errors import invalid
from lightspeed.serve.protocol import DATATYPE_TO_NUMPY, config_type_to_datatype


@dataclass(frozen=True)
class WarmupSample:
    name: str
    inputs: dict[str, np.ndarray]
    count: int


def warmup_samples(config, model_dir: Path, mc) -> list[WarmupSample]:
    """The config's warm-up samples with their input arrays (``mc``: model_config module)."""
    declared = {t.name for t in config.input}
    samples = []
    rng = np.random.default_rng(0)
    for w in config.model_warmup:
        where = f"model '{config.name}': model_warmup '{w.name}'"
        batched = config.max_batch_size > 0
        if batched and not 1 <= w.batch_size <= config.max_batch_size:
            raise invalid(f"{where}: batch_size {w.batch_size} must be in 1..max_batch_size")
        inputs = {}
        for name, spec in w.inputs.items():
            if name not in declared:
                raise invalid(f"{where}: input '{name}' is not an input of the model")
            datatype = config_type_to_datatype(mc.DataType.Name(spec.data_type))
            dtype = DATATYPE_TO_NUMPY.get(datatype)
            if dtype is None:
                raise invalid(
                    f"{where}: input '{name}' has data_type {datatype}; use a numeric one"
                )
            if any(d < 1 for d in spec.dims):
                raise invalid(f"{where}: input '{name}' needs explicit dims (no -1)")
            shape = ([w.batch_size] if batched else []) + list(spec.dims)
            inputs[name] = _data(spec, shape, np.dtype(dtype), model_dir, where, name, rng)
        missing = declared - set(inputs)
        if missing:
            raise invalid(f"{where}: gives no data for input(s) {sorted(missing)}")
        samples.append(WarmupSample(w.name, inputs, max(1, w.count)))
    return samples


def _data(spec, shape, dtype, model_dir: Path, where: str, name: str, rng) -> np.ndarray:
    kind = spec.WhichOneof("input_data_type")
    if kind == "input_data_file":
        path = model_dir / "warmup" / spec.input_data_file
        if not path.is_file():
            raise invalid(f"{where}: input_data_file {path} is missing")
        raw = path.read_bytes()
        need = int(np.prod(shape)) * dtype.itemsize
        if len(raw) != need:
            raise invalid(
                f"{where}: {path} has {len(raw)} bytes; input '{name}' of shape {shape} "
                f"needs {need}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    if kind == "random_data":
        if dtype.kind == "f":
            return rng.normal(size=shape).astype(dtype)
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        if info is None:
            return rng.integers(0, 2, size=shape).astype(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127), size=shape).astype(dtype)
    return np.zeros(shape, dtype)  # zero_data, and Triton's default


def run_warmup(
    model: str,
    samples: list[WarmupSample],
    instances: list,
    execute: Callable[[object, dict], object],
) -> None:
    """Run every sample on every instance; the first failure fails the load."""
    for i, instance in enumerate(instances):
        for sample in samples:
            for _ in range(sample.count):
                try:
                    execute(instance, sample.inputs)
                except Exception as exc:
                    raise invalid(
                        f"model '{model}': model_warmup '{sample.name}' failed on instance {i}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
