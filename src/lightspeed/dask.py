"""Offline inference on Dask: a model over a dask array, dataframe or Parquet dataset.

Each partition runs through a *runner*: the bit-exact emulator (a compiled
model directory), onnxruntime (an ``.onnx`` file), or inference servers
(``grpc://host:port/model``, several endpoints separated by commas). Runners
are built once per worker process and reused by every task on it (the cache
is keyed by the model spec), so a model is loaded once per worker, not per
task, and a server client keeps its connections.

Results come back in partition order; a partition with the wrong columns or
shape fails the run loudly with the partition's index.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import InputError, LightspeedError, require

Runner = Callable[[np.ndarray], np.ndarray]


def _dask():
    return require("dask", "dask", "offline inference on Dask")


@functools.lru_cache(maxsize=8)
def runner(spec: str) -> Runner:
    """Build (once per process) the function that maps a 2-D batch to model outputs."""
    if spec.startswith("grpc://"):
        return _remote_runner(spec)
    path = Path(spec)
    if path.suffix == ".onnx":
        ort = require("onnxruntime", "serve", "onnxruntime inference")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run_onnx(x: np.ndarray) -> np.ndarray:
            return sess.run(None, {name: x.astype(np.float32, copy=False)})[0]

        return run_onnx
    from lightspeed.quantize import load_compiled

    q = load_compiled(path)
    if len(q.input_names) != 1 or len(q.output_names) != 1:
        raise InputError("Dask inference supports single-input, single-output models")
    shape = q.input_shapes[q.input_names[0]]

    def run_emulator(x: np.ndarray) -> np.ndarray:
        return q.predict(x.reshape(len(x), *shape))

    return run_emulator


def warm(spec: str | Path) -> bool:
    """Build the runner now (e.g. on every worker: ``client.run(warm, spec)``)."""
    runner(str(spec))
    return True


def _remote_runner(spec: str) -> Runner:
    """``grpc://h1:p1,h2:p2/model``: one client per process, spread over the endpoints."""
    rest = spec[len("grpc://") :]
    hosts, _, model = rest.partition("/")
    if not model or not hosts:
        raise InputError(f"{spec}: give servers and model, e.g. grpc://127.0.0.1:8001/jet_tagger")
    return _BlockingClient(hosts.split(","), model).infer


class _BlockingClient:
    """A SonicClient on its own event-loop thread, callable from synchronous Dask tasks.

    The partition goes out as one event: the client splits it at the model's
    max_batch_size, sends the pieces concurrently to the least-loaded servers,
    retries failed pieces elsewhere and returns the outputs in order.
    """

    def __init__(self, urls: list[str], model: str):
        import asyncio
        import threading

        from lightspeed.client import SonicClient

        self.loop = asyncio.new_event_loop()
        threading.Thread(
            target=self.loop.run_forever, daemon=True, name="lightspeed-client"
        ).start()
        self.client = SonicClient(urls, model, retries=max(2, 2 * len(urls)), timeout_s=30.0)
        self._call(self.client.connect())

    def _call(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def infer(self, x: np.ndarray) -> np.ndarray:
        out = self._call(self.client.infer_event(x.astype(np.float32, copy=False)))
        return (
            next(iter(out.values()))
            if len(out) == 1
            else np.concatenate(list(out.values()), axis=1)
        )


def _run_block(block: np.ndarray, spec: str, batch_size: int | None) -> np.ndarray:
    run = runner(spec)
    x = np.asarray(block)
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    if not batch_size or len(x) <= batch_size:
        return np.asarray(run(x))
    return np.concatenate(
        [np.asarray(run(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    )


def _output_width(spec: str, n_features: int) -> int:
    probe = runner(spec)(np.zeros((1, n_features), dtype=np.float32))
    return int(np.asarray(probe).reshape(1, -1).shape[1])


def predict_array(darr: Any, model: str | Path, batch_size: int | None = None) -> Any:
    """Lazily apply ``model`` to a 2-D dask array (rows = samples); returns a dask array."""
    _dask()
    spec = str(model)
    if darr.ndim != 2:
        raise InputError(f"expected a 2-D dask array (samples, features), got {darr.ndim}-D")
    if len(darr.chunks[1]) > 1:
        darr = darr.rechunk({1: -1})  # a sample must not be split across blocks
    width = _output_width(spec, darr.shape[1])
    return darr.map_blocks(
        _run_block, spec, batch_size, dtype=np.float64, chunks=(darr.chunks[0], (width,)),
    )  # fmt: skip


def _run_partition(df: Any, spec: str, columns: Sequence[str], outputs: Sequence[str],
                   batch_size: int | None, partition_info: dict | None = None) -> Any:  # fmt: skip
    import pandas as pd

    missing = [c for c in columns if c not in df.columns]
    if missing:
        where = f"partition {partition_info['number']}" if partition_info else "a partition"
        raise InputError(f"{where} lacks columns {missing}; it has {list(df.columns)}")
    x = df[list(columns)].to_numpy(dtype=np.float32)
    y = _run_block(x, spec, batch_size) if len(x) else np.zeros((0, len(outputs)))
    return pd.DataFrame(np.asarray(y).reshape(len(x), -1), columns=list(outputs), index=df.index)


def predict_dataframe(
    ddf: Any,
    model: str | Path,
    columns: Sequence[str],
    outputs: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> Any:
    """Apply ``model`` to ``columns`` of a dask dataframe; returns a dataframe of outputs."""
    _dask()
    import pandas as pd

    spec = str(model)
    width = _output_width(spec, len(columns))
    outputs = list(outputs or [f"out_{i}" for i in range(width)])
    if len(outputs) != width:
        raise InputError(f"model gives {width} outputs but {len(outputs)} output names were given")
    meta = pd.DataFrame({c: np.zeros(0, dtype=np.float64) for c in outputs})
    return ddf.map_partitions(_run_partition, spec, list(columns), outputs, batch_size, meta=meta)


def predict_parquet(
    source: str | Path,
    model: str | Path,
    columns: Sequence[str],
    output: str | Path,
    outputs: Sequence[str] | None = None,
    batch_size: int | None = None,
    scheduler: str | None = None,
) -> Path:
    """Read a Parquet dataset, run ``model`` partition by partition, write the outputs as Parquet.

    ``scheduler``: None (the current dask client or the default), ``"local:N"``
    (a fresh LocalCluster with N workers) or a scheduler address.
    """
    dd = require("dask.dataframe", "dask", "Parquet inference")
    with _client(scheduler):
        ddf = dd.read_parquet(str(source))
        out = predict_dataframe(ddf, model, columns, outputs, batch_size)
        out.to_parquet(str(output), write_index=False)
    return Path(output)


class _client:
    """Context: connect to a scheduler (or start a LocalCluster) for the duration of a run."""

    def __init__(self, scheduler: str | None):
        self.scheduler = scheduler
        self.client = None
        self.cluster = None

    def __enter__(self):
        if self.scheduler is None:
            return None
        distributed = require("distributed", "dask", "distributed Dask runs")
        if self.scheduler.startswith("local:"):
            n = int(self.scheduler.split(":", 1)[1])
            self.cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = distributed.Client(self.cluster)
        else:
            try:
                self.client = distributed.Client(self.scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise LightspeedError(
                    f"cannot reach the Dask scheduler at {self.scheduler} ({exc}); "
                    "check the address or use --scheduler local:N"
                ) from None
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
