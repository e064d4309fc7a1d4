"""Ragged batching the Triton way: variable-size requests in one execution.

An input with ``allow_ragged_batch: true`` is not shape-checked against the other
requests of a batch; like Triton's ONNX Runtime, TensorFlow and PyTorch backends,
the requests' tensors are flattened and concatenated into one 1-D tensor, and
``batch_input`` entries tell the model where each request's elements are:

=========================================== ============================================
kind                                        tensor given to the model (n = requests)
=========================================== ============================================
``BATCH_ELEMENT_COUNT``                     [n]: element count of each request's source
``BATCH_ACCUMULATED_ELEMENT_COUNT``         [n]: running sum of those counts
``BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO`` [n+1]: the same with a leading 0
``BATCH_MAX_ELEMENT_COUNT_AS_SHAPE``        [max count]: only its shape carries meaning
``BATCH_ITEM_SHAPE``                        [n, rank]: each request's shape without batch
``BATCH_ITEM_SHAPE_FLATTEN``                [n*rank]: the same, flattened
=========================================== ============================================

A ``batch_output`` of kind ``BATCH_SCATTER_WITH_INPUT_SHAPE`` is split back by the
source input's element counts and each piece takes that request's input shape;
every other output is split along its first axis by the requests' batch sizes.
This is the mode CMS's SonicTriton uses for variable-length inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lightspeed.serve.errors import ServeError, invalid
from lightspeed.serve.protocol import DATATYPE_TO_NUMPY, config_type_to_datatype

BATCH_INPUT_KINDS = (
    "BATCH_ELEMENT_COUNT",
    "BATCH_ACCUMULATED_ELEMENT_COUNT",
    "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
    "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE",
    "BATCH_ITEM_SHAPE",
    "BATCH_ITEM_SHAPE_FLATTEN",
)
SCATTER = "BATCH_SCATTER_WITH_INPUT_SHAPE"


@dataclass(frozen=True)
class BatchInput:
    """One ``batch_input`` entry: a tensor the server makes, not the client."""

    kind: str
    target: str
    dtype: np.dtype
    source: str


@dataclass(frozen=True)
class RaggedSpec:
    """The ragged part of a model config, checked once at load."""

    ragged: frozenset[str]  # inputs with allow_ragged_batch
    batch_inputs: tuple[BatchInput, ...] = ()
    scatter: tuple[tuple[str, str], ...] = ()  # (output, source input) pairs

    def key(self, inputs: dict) -> tuple:
        """What must agree for two requests to share a batch: the non-ragged shapes."""
        return tuple(sorted((k, a.shape[1:]) for k, a in inputs.items() if k not in self.ragged))

    def merge(self, requests: list[dict]) -> dict:
        """The model's inputs for a batch: ragged inputs flat, others stacked, batch inputs."""
        merged = {}
        for name in requests[0]:
            parts = [r[name] for r in requests]
            if name in self.ragged:
                merged[name] = np.concatenate([p.reshape(-1) for p in parts])
            else:
                merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        for bi in self.batch_inputs:
            merged[bi.target] = _batch_input(bi, [r[bi.source] for r in requests])
        return merged

    def split(self, result: dict, requests: list[dict], rows: list[int], names: list[str]):
        """Each request's outputs from one execution's results (views where possible)."""
        scatter = dict(self.scatter)
        pieces: list[dict] = [{} for _ in requests]
        for name in names:
            out = np.asarray(result[name])
            source = scatter.get(name)
            if source is not None:
                shapes = [r[source].shape for r in requests]
                sizes = [int(np.prod(s)) for s in shapes]
                if out.size != sum(sizes):
                    raise ServeError(
                        "INTERNAL",
                        f"batch_output '{name}' has {out.size} elements but its source input "
                        f"'{source}' has {sum(sizes)}; BATCH_SCATTER_WITH_INPUT_SHAPE needs an "
                        "output of the input's shape",
                    )
                flat = out.reshape(-1)
                ends = np.cumsum(sizes)
                for i, (shape, end, size) in enumerate(zip(shapes, ends, sizes, strict=True)):
                    pieces[i][name] = flat[end - size : end].reshape(shape)
                continue
            if out.ndim == 0 or out.shape[0] != sum(rows):
                raise ServeError(
                    "INTERNAL",
                    f"output '{name}' has shape {list(out.shape)}; with ragged inputs an output "
                    f"that is not a batch_output needs one row per request batch item "
                    f"({sum(rows)} here)",
                )
            offset = 0
            for i, n in enumerate(rows):
                pieces[i][name] = out[offset : offset + n]
                offset += n
        return pieces


def _batch_input(bi: BatchInput, sources: list[np.ndarray]) -> np.ndarray:
    counts = np.array([a.size for a in sources], dtype=np.int64)
    kind = bi.kind
    value: np.ndarray
    if kind == "BATCH_ELEMENT_COUNT":
        value = counts
    elif kind == "BATCH_ACCUMULATED_ELEMENT_COUNT":
        value = np.cumsum(counts)
    elif kind == "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO":
        value = np.concatenate([[0], np.cumsum(counts)])
    elif kind == "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE":
        value = np.zeros(int(counts.max()))
    else:  # BATCH_ITEM_SHAPE(_FLATTEN): each request's shape without its batch dimension
        value = np.array([a.shape[1:] for a in sources], dtype=np.int64)
        if kind == "BATCH_ITEM_SHAPE_FLATTEN":
            value = value.reshape(-1)
    return value.astype(bi.dtype)


def ragged_spec(config, name: str, mc) -> RaggedSpec | None:
    """The checked ragged settings of a config (``mc``: the model_config module), or None."""
    ragged = frozenset(t.name for t in config.input if t.allow_ragged_batch)
    if not ragged and not len(config.batch_input) and not len(config.batch_output):
        return None
    where = f"model '{name}'"
    if config.max_batch_size <= 0:
        raise invalid(f"{where}: ragged batching needs max_batch_size > 0")
    inputs = {t.name for t in config.input}
    outputs = {t.name for t in config.output}
    batch_inputs = []
    for b in config.batch_input:
        kind = mc.BatchInput.Kind.Name(b.kind)
        if len(b.target_name) != 1 or len(b.source_input) != 1:
            raise invalid(
                f"{where}: batch_input {kind} needs exactly one target_name and one "
                f"source_input (has {list(b.target_name)} and {list(b.source_input)})"
            )
        target, source = b.target_name[0], b.source_input[0]
        if source not in inputs:
            raise invalid(
                f"{where}: batch_input '{target}' reads source_input '{source}', which is not "
                f"an input of the model ({sorted(inputs)})"
            )
        if target in inputs:
            raise invalid(
                f"{where}: batch_input target '{target}' is also a client input; the server "
                "makes batch inputs, so remove it from the input list"
            )
        datatype = config_type_to_datatype(mc.DataType.Name(b.data_type))
        if datatype not in ("INT32", "INT64", "FP32", "FP64"):
            raise invalid(
                f"{where}: batch_input '{target}' has data_type {datatype}; use TYPE_INT32, "
                "TYPE_INT64, TYPE_FP32 or TYPE_FP64"
            )
        batch_inputs.append(BatchInput(kind, target, DATATYPE_TO_NUMPY[datatype], source))
    scatter = []
    for b in config.batch_output:
        kind = mc.BatchOutput.Kind.Name(b.kind)
        if kind != SCATTER or len(b.source_input) != 1:
            raise invalid(
                f"{where}: batch_output {kind} with source_input {list(b.source_input)}; "
                f"only {SCATTER} with one source_input exists"
            )
        source = b.source_input[0]
        if source not in ragged:
            raise invalid(
                f"{where}: batch_output source_input '{source}' is not an input with "
                "allow_ragged_batch: true"
            )
        for target in b.target_name:
            if target not in outputs:
                raise invalid(
                    f"{where}: batch_output target '{target}' is not an output of the model "
                    f"({sorted(outputs)})"
                )
            scatter.append((target, source))
    return RaggedSpec(ragged, tuple(batch_inputs), tuple(scatter))
