"""The protocol-neutral server core: loaded models, validation, inference, statistics.

Front ends (gRPC, HTTP) decode tensors, call :meth:`LoadedModel.check` and
:meth:`LoadedModel.infer`, and encode the result; everything a client can get
wrong is raised here as a :class:`ServeError` with its status code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightspeed.errors import require
from lightspeed.serve import backends as B
from lightspeed.serve.batcher import (
    LATENCY_BOUNDS_NS,
    BatchingPolicy,
    QueuePolicy,
    Scheduler,
    as_serve_error,
)
from lightspeed.serve.cache import ResponseCache, request_key
from lightspeed.serve.devices import gpu_count, placements
from lightspeed.serve.ensemble import Step, check_composing, ensemble_steps, run_steps
from lightspeed.serve.errors import ServeError, invalid, not_found, unavailable
from lightspeed.serve.logs import kv
from lightspeed.serve.protocol import datatype_to_config_type
from lightspeed.serve.ragged import ragged_spec
from lightspeed.serve.repository import (
    ModelRepository,
    TensorSpec,
    backend_name,
    model_config_pb2,
    select_versions,
    tensor_specs,
    validate_config,
)
from lightspeed.serve.sequence import SequenceScheduler, sequence_policy
from lightspeed.serve.shm import SharedMemoryRegistry
from lightspeed.serve.warmup import run_warmup, warmup_samples

log = logging.getLogger("lightspeed.serve")


@dataclass
class CoreOptions:
    """Server-wide settings that model configs do not carry."""

    max_queue_size: int = 4096  # per model version, when the config sets none
    ort_threads: int = 1  # intra-op threads per onnxruntime instance
    inline_below_us: int = 500  # run executions cheaper than this on the loop thread (0: never)
    response_cache_bytes: int = 0  # the server's response cache (0: none)


def _queue_policy(qp, delay_value: int) -> QueuePolicy:
    return QueuePolicy(
        max_queue_size=qp.max_queue_size,
        default_timeout_ns=qp.default_timeout_microseconds * 1000,
        allow_timeout_override=qp.allow_timeout_override or not qp.default_timeout_microseconds,
        delay_on_timeout=qp.timeout_action == delay_value,
    )


def batching_policy(config, inline_below_us: int = 0) -> BatchingPolicy:
    mc = model_config_pb2()
    delay = mc.ModelQueuePolicy.DELAY
    db = config.dynamic_batching
    dynamic = config.HasField("dynamic_batching")
    qp = _queue_policy(db.default_queue_policy, delay)
    levels = tuple(
        sorted((int(k), _queue_policy(v, delay)) for k, v in db.priority_queue_policy.items())
    )
    return BatchingPolicy(
        max_batch_size=config.max_batch_size,
        dynamic=dynamic,
        preferred=tuple(db.preferred_batch_size),
        max_queue_delay_ns=db.max_queue_delay_microseconds * 1000,
        preserve_ordering=db.preserve_ordering,
        max_queue_size=qp.max_queue_size,
        default_timeout_ns=qp.default_timeout_ns,
        allow_timeout_override=qp.allow_timeout_override,
        inline_below_ns=inline_below_us * 1000,
        ragged=ragged_spec(config, config.name, mc),
        priority_levels=db.priority_levels,
        default_priority=db.default_priority_level,
        level_policies=levels,
        delay_on_timeout=qp.delay_on_timeout,
    )


class LoadedModel:
    """One ready version of a model: its specs, instances and scheduler."""

    def __init__(
        self,
        config,
        version: int,
        instances: list[B.Backend],
        inline_below_us: int = 0,
        cache: ResponseCache | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.version = version
        self.version_str = str(version)
        self.max_batch_size = config.max_batch_size
        self.inputs: dict[str, TensorSpec] = {
            s.name: s for s in tensor_specs(config.input, "input", self.name)
        }
        self.outputs: dict[str, TensorSpec] = {
            s.name: s for s in tensor_specs(config.output, "output", self.name)
        }
        self.output_names = list(self.outputs)
        self._instances = instances
        self._finite_only = any(getattr(i, "finite_only", False) for i in instances)
        # edge-list inputs of graph models: every index must lie in [0, limit)
        self._index_limits: dict[str, int] = dict(
            getattr(next(iter(instances), None), "index_limits", None) or {}
        )
        self._cache = cache if config.response_cache.enable else None
        seq = sequence_policy(config, self.name, model_config_pb2())
        self.scheduler: Scheduler | SequenceScheduler
        if seq is not None:
            self.scheduler = SequenceScheduler(
                f"{self.name}:{version}", instances, _execute, seq, self.output_names
            )
        else:
            self.scheduler = Scheduler(
                f"{self.name}:{version}",
                instances,
                _execute,
                batching_policy(config, inline_below_us),
                self.output_names,
            )

    # ---------------------------------------------------------------- validation
    def check(self, inputs: Mapping[str, np.ndarray], request_id: str = "") -> int:
        """Validate decoded inputs against the config; return the batch size (rows).

        A refused request is counted and logged here: it never reaches a batch, so it
        cannot fail anyone else's request.
        """
        try:
            return self._check(inputs)
        except ServeError as exc:
            self.scheduler.refused(exc, request_id)
            raise

    def _check(self, inputs: Mapping[str, np.ndarray]) -> int:
        if len(inputs) != len(self.inputs) or any(n not in self.inputs for n in inputs):
            unknown = [n for n in inputs if n not in self.inputs]
            if unknown:
                raise invalid(
                    f"model '{self.name}' has no input named {unknown[0]!r}; "
                    f"its inputs are {list(self.inputs)}"
                )
            missing = [n for n in self.inputs if n not in inputs]
            raise invalid(f"model '{self.name}': input {missing[0]!r} is missing from the request")
        batched = self.max_batch_size > 0
        rows = -1
        for name, arr in inputs.items():
            spec = self.inputs[name]
            shape = arr.shape
            dims = shape[1:] if batched else shape
            if len(dims) != len(spec.dims) or any(
                s != d and s != -1 for s, d in zip(spec.dims, dims, strict=True)
            ):
                want = ([-1] if batched else []) + list(spec.dims)
                hint = (
                    self._instances[0].shape_hint(name, shape)
                    if batched and self._instances
                    else None
                )
                raise invalid(
                    f"model '{self.name}': input '{name}' has shape {list(shape)}, expected {want}"
                    + (f"; {hint}" if hint else "")
                )
            if batched:
                n = shape[0]
                if rows == -1:
                    rows = n
                elif n != rows:
                    raise invalid(
                        f"model '{self.name}': inputs disagree on the batch size ({rows} vs {n})"
                    )
        if self._finite_only:
            for name, arr in inputs.items():
                if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                    raise invalid(
                        f"model '{self.name}': input '{name}' contains NaN or Inf, which the "
                        "fixed-point backend cannot represent; clean the data before sending"
                    )
        for name, n in self._index_limits.items():
            ind = inputs.get(name)
            if ind is None or not ind.size:
                continue
            bad = (ind < 0) | (ind >= n)
            if ind.dtype.kind == "f":
                bad |= ~np.isfinite(ind) | (ind != np.floor(ind))
            if bad.any():
                pos = [int(i) for i in np.argwhere(bad)[0]]
                raise invalid(
                    f"model '{self.name}': input '{name}' holds index {ind[tuple(pos)]} at "
                    f"{pos}, outside [0, {n}): the model is compiled for graphs of at most {n} "
                    "nodes (integer indices 0.."
                    f"{n - 1}); pad smaller graphs, split bigger ones or recompile"
                )
        if not batched:
            return 1
        if rows > self.max_batch_size:
            raise invalid(
                f"model '{self.name}': batch size {rows} exceeds max_batch_size "
                f"{self.max_batch_size}; split the request"
            )
        if rows == 0:
            raise invalid(f"model '{self.name}': batch size is 0")
        return rows

    def check_outputs(self, names: list[str]) -> None:
        for n in names:
            if n not in self.outputs:
                raise invalid(
                    f"model '{self.name}' has no output named {n!r}; "
                    f"its outputs are {self.output_names}"
                )

    def infer(
        self,
        inputs: dict[str, np.ndarray],
        rows: int,
        outputs: list[str] | None = None,
        timeout_ns: int = 0,
        request_id: str = "",
        params: Mapping | None = None,
    ) -> asyncio.Future:
        """Queue a checked request; await the returned future for {output: array}.

        ``params``: the request's parameters (Triton's ``priority``, ...).
        """
        priority = 0
        if params:
            priority = _int_param(params, "priority", self.name)
        if isinstance(self.scheduler, SequenceScheduler):
            p = params or {}
            sequence = (
                p.get("sequence_id", 0),
                bool(p.get("sequence_start")),
                bool(p.get("sequence_end")),
            )
            return self.scheduler.submit(
                inputs, rows, outputs, timeout_ns, request_id, priority, sequence
            )
        cache = self._cache
        if cache is None:
            return self.scheduler.submit(inputs, rows, outputs, timeout_ns, request_id, priority)
        t0 = time.monotonic_ns()
        key = request_key(self.name, self.version_str, inputs, outputs)
        hit = cache.get(key)
        stats = self.scheduler.stats
        if hit is not None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(dict(hit))
            took = time.monotonic_ns() - t0
            stats.cache_hit_count += 1
            stats.cache_hit_ns += took
            stats.success_count += 1
            stats.success_ns += took
            return fut
        fut = self.scheduler.submit(inputs, rows, outputs, timeout_ns, request_id, priority)
        stats.cache_miss_count += 1
        stats.cache_miss_ns += time.monotonic_ns() - t0

        def store(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is None:
                t1 = time.monotonic_ns()
                cache.put(key, f.result())
                stats.cache_miss_ns += time.monotonic_ns() - t1

        fut.add_done_callback(store)
        return fut

    def metadata(self) -> dict:
        batch = [-1] if self.max_batch_size > 0 else []
        return {
            "name": self.name,
            "versions": [self.version_str],
            "platform": self.config.platform or self.config.backend,
            "inputs": [
                {"name": s.name, "datatype": s.datatype, "shape": batch + list(s.dims)}
                for s in self.inputs.values()
            ],
            "outputs": [
                {"name": s.name, "datatype": s.datatype, "shape": batch + list(s.dims)}
                for s in self.outputs.values()
            ],
        }

    async def close(self) -> None:
        await self.scheduler.close()
        for inst in self._instances:
            inst.close()


class EnsembleModel(LoadedModel):
    """An ensemble: no instances; each request runs the steps on the composing models."""

    def __init__(self, config, version: int, steps: list[Step], get) -> None:
        super().__init__(config, version, [])
        self._steps = steps
        self._get = get
        self._tasks: set[asyncio.Future] = set()

    def infer(
        self,
        inputs: dict[str, np.ndarray],
        rows: int,
        outputs: list[str] | None = None,
        timeout_ns: int = 0,
        request_id: str = "",
        params: Mapping | None = None,
    ) -> asyncio.Future:
        task = asyncio.ensure_future(self._run(inputs, rows, outputs, timeout_ns, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, inputs, rows, outputs, timeout_ns, request_id) -> dict:
        stats = self.scheduler.stats
        t0 = time.monotonic_ns()
        try:
            tensors = await run_steps(self._steps, inputs, self._get, request_id, timeout_ns)
        except Exception as exc:
            err = as_serve_error(self.name, exc)
            self.scheduler.refused(err, request_id)  # counted and logged
            stats.fail_ns += time.monotonic_ns() - t0
            raise err from None
        took = time.monotonic_ns() - t0
        stats.success_count += 1
        stats.success_ns += took
        stats.latency_hist[bisect_left(LATENCY_BOUNDS_NS, took)] += 1
        stats.inference_count += rows
        stats.execution_count += 1
        stats.last_inference_ms = time.time_ns() // 1_000_000
        return {n: tensors[n] for n in outputs or self.output_names}

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().close()


def _int_param(params: Mapping, key: str, model: str) -> int:
    value = params.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"model '{model}': request parameter {key} must be a non-negative integer")
    return value


def _execute(instance, inputs: dict, outputs: list) -> dict:
    return instance.execute(inputs, outputs)


# ------------------------------------------------------------------------ building models
def _instance_count(config) -> tuple[int, str]:
    """Total instances and the device: "gpu" (required), "auto" (if present) or "cpu"."""
    mc = model_config_pb2()
    groups = list(config.instance_group)
    if not groups:
        return 1, "auto"  # Triton's default group is KIND_AUTO
    count = sum(g.count if g.count > 0 else 1 for g in groups)
    kinds = {g.kind for g in groups}
    if mc.ModelInstanceGroup.KIND_GPU in kinds:
        return count, "gpu"
    return count, "auto" if mc.ModelInstanceGroup.KIND_AUTO in kinds else "cpu"


def _autocomplete(config, backend: B.Backend) -> None:
    """Fill inputs/outputs missing from the config from the model file, and check the rest."""
    ins, outs = backend.io()
    mc = model_config_pb2()
    # the server makes these: batch inputs, sequence controls and implicit state
    made = {t for b in config.batch_input for t in b.target_name}
    made |= {c.name for c in config.sequence_batching.control_input}
    made |= {st.input_name for st in config.sequence_batching.state}
    ins = [s for s in ins if s.name not in made]
    outs = [
        s for s in outs if s.name not in {st.output_name for st in config.sequence_batching.state}
    ]
    for field, declared, found in (("input", config.input, ins), ("output", config.output, outs)):
        if not found:
            continue
        if len(declared) == 0:
            for spec in found:
                t = declared.add()
                t.name = spec.name
                t.data_type = mc.DataType.Value(datatype_to_config_type(spec.datatype))
                t.dims.extend(spec.dims)
            continue
        by_name = {s.name: s for s in found}
        for t in declared:
            match = by_name.get(t.name)
            if match is None:
                raise invalid(
                    f"model '{config.name}': config.pbtxt declares {field} '{t.name}' but the "
                    f"model file has {field}s {list(by_name)}"
                )
            want = datatype_to_config_type(match.datatype)
            if mc.DataType.Name(t.data_type) != want:
                raise invalid(
                    f"model '{config.name}': {field} '{t.name}' is "
                    f"{mc.DataType.Name(t.data_type)} in config.pbtxt but {want} in the model file"
                )


def build_instances(config, path: Path, version: int, options: CoreOptions) -> list[B.Backend]:
    """Create the backend instances for one model version (blocking; run off the loop)."""
    name = backend_name(config)
    count, gpu = _instance_count(config)
    batched = config.max_batch_size > 0
    mc = model_config_pb2()
    if name == "onnxruntime":
        ort = require("onnxruntime", "serve", "the onnxruntime backend")
        available = set(ort.get_available_providers())
        where = placements(config, gpu_count(available), available, mc.ModelInstanceGroup)
        count = len(where)

        def make(i: int = 0):
            return B.OnnxRuntimeBackend(
                path, providers=where[i].providers, threads=options.ort_threads, batched=batched
            )
    elif name == "lightspeed":
        if gpu == "gpu":
            raise invalid(
                f"model '{config.name}': instance_group kind KIND_GPU, but the lightspeed "
                "emulator backend runs on the CPU; use KIND_CPU (or serve the ONNX file on GPU)"
            )
        if ragged_spec(config, config.name, model_config_pb2()) is not None:
            raise invalid(
                f"model '{config.name}': ragged batching (allow_ragged_batch, batch_input, "
                "batch_output) hands the model flattened inputs, but a compiled lightspeed model "
                "has fixed input shapes; serve it without them (requests whose shapes differ are "
                "then batched separately)"
            )
        dtypes = {s.name: s.dtype for s in tensor_specs(config.output, "output", config.name)}

        def make(i: int = 0):
            return B.LightspeedBackend(path, output_dtypes=dtypes)
    elif name == "python":
        module = B.load_python_module(path, f"_lightspeed_model_{config.name}_{version}")
        if hasattr(module, "TritonPythonModel"):

            def make(i: int = 0):
                return B.TritonPythonBackend(module.TritonPythonModel, config, path, version)
        elif callable(getattr(module, "infer", None)):

            def make(i: int = 0):
                return B.PythonCallableBackend(module.infer)
        else:
            raise invalid(
                f"{path} defines neither class TritonPythonModel nor a function infer(inputs)"
            )
    else:  # validate_config rejects others first
        raise invalid(f"backend '{name}' is not available")
    first = make()
    _autocomplete(config, first)
    if len(config.input) == 0 or len(config.output) == 0:
        raise invalid(
            f"model '{config.name}': config.pbtxt must list input and output tensors "
            f"(the {name} backend cannot infer them)"
        )
    validate_config(config, config.name)
    return [first] + [make(i) for i in range(1, count)]


def warm_up(config, model_dir: Path, instances: list[B.Backend]) -> None:
    """Run the config's model_warmup samples on every instance (before it is ready)."""
    mc = model_config_pb2()
    samples = warmup_samples(config, model_dir, mc)
    if not samples:
        return
    outputs = [t.name for t in config.output]
    ragged = ragged_spec(config, config.name, mc)

    def run(instance, inputs):
        if ragged is not None:
            inputs = ragged.merge([inputs])
        return instance.execute(inputs, outputs)

    run_warmup(config.name, samples, instances, run)
    log.info("model warmed up", extra=kv(model=config.name, samples=len(samples)))


# ------------------------------------------------------------------------ the core
class InferenceCore:
    """All models the server knows: load/unload, lookup, statistics."""

    def __init__(self, repository: ModelRepository | None, options: CoreOptions | None = None):
        self.repository = repository
        self.options = options or CoreOptions()
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._latest: dict[str, LoadedModel] = {}
        self._state: dict[str, tuple[str, str]] = {}  # name -> (state, reason)
        self.loading = False  # load_all running: the server is not ready yet
        self._locks: dict[str, asyncio.Lock] = {}
        self.shm = SharedMemoryRegistry()
        size = self.options.response_cache_bytes
        self.cache = ResponseCache(size) if size > 0 else None
        # non-empty: repository load/unload is refused with this message (--workers N)
        self.frozen = ""

    # ---------------------------------------------------------------- lookup (hot path)
    def get(self, name: str, version: str = "") -> LoadedModel:
        if not version:
            model = self._latest.get(name)
            if model is not None:
                return model
        else:
            versions = self._models.get(name)
            if versions is not None:
                try:
                    model = versions.get(int(version))
                except ValueError:
                    raise invalid(f"model version {version!r} is not an integer") from None
                if model is not None:
                    return model
                raise not_found(
                    f"model '{name}' version {version} is not loaded; loaded versions: "
                    f"{sorted(versions)}"
                )
        state, reason = self._state.get(name, ("", ""))
        if state == "UNAVAILABLE" and reason:
            raise unavailable(f"model '{name}' is not ready: {reason}")
        raise not_found(f"model '{name}' is not loaded; see the repository index for models")

    def ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except ServeError:
            return False
        return True

    def loaded(self) -> list[LoadedModel]:
        return [m for vs in self._models.values() for m in vs.values()]

    # ---------------------------------------------------------------- load / unload
    async def load_all(self) -> None:
        try:
            if self.repository is None:
                return
            names = self.repository.model_names()
            # ensembles last: their steps must be loaded first
            names.sort(key=lambda n: self._is_ensemble(n))
            for name in names:
                try:
                    await self.load(name)
                except ServeError as exc:
                    log.error("model load failed", extra=kv(model=name, error=exc.message))
        finally:
            self.loading = False

    def _is_ensemble(self, name: str) -> bool:
        assert self.repository is not None
        try:
            return backend_name(self.repository.read_config(name)) == "ensemble"
        except ServeError:
            return False

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str, config_override: str | None = None) -> None:
        """(Re)load a model from the repository; the old versions drain before closing."""
        if self.frozen:
            raise ServeError("FAILED_PRECONDITION", self.frozen)
        if self.repository is None:
            raise not_found("this server has no model repository to load from")
        self.repository.model_dir(name)  # NOT_FOUND for a name the repository lacks
        async with self._lock(name):
            self._state[name] = ("LOADING", "")
            try:
                loop = asyncio.get_running_loop()
                new = await loop.run_in_executor(None, self._build, name, config_override)
            except ServeError as exc:
                if name not in self._models:
                    self._state[name] = ("UNAVAILABLE", exc.message)
                else:
                    self._state[name] = ("READY", "")
                raise
            except Exception as exc:  # backend bugs must not take the server down
                msg = f"model '{name}' failed to load: {type(exc).__name__}: {exc}"
                self._state[name] = ("UNAVAILABLE", msg)
                raise ServeError("INTERNAL", msg) from exc
            old = self._models.get(name, {})
            self._install(name, new)
            log.info("model loaded", extra=kv(model=name, versions=sorted(new)))
            for model in old.values():
                await model.close()

    def _build(self, name: str, config_override: str | None) -> dict[int, LoadedModel]:
        assert self.repository is not None
        repo = self.repository
        if config_override:
            from google.protobuf import json_format

            config = model_config_pb2().ModelConfig()
            try:
                json_format.Parse(config_override, config)
            except json_format.ParseError as exc:
                raise invalid(f"model '{name}': config override is not valid JSON: {exc}") from None
            validate_config(config, name)
        else:
            config = repo.read_config(name)
        versions = select_versions(config, repo.versions(name))
        if not versions:
            raise invalid(
                f"model '{name}': no version directory (e.g. {repo.model_dir(name)}/1/) "
                "matches the version policy"
            )
        built: dict[int, LoadedModel] = {}
        if backend_name(config) == "ensemble":
            steps = ensemble_steps(config, name)
            types = {t.name: t.datatype for t in tensor_specs(config.input, "input", name)}
            outs = {t.name: t.datatype for t in tensor_specs(config.output, "output", name)}
            check_composing(name, config.max_batch_size, types, outs, steps, self.get)
            if config.response_cache.enable:
                raise invalid(
                    f"ensemble '{name}': response_cache on an ensemble is not supported; "
                    "enable it on the composing models"
                )
            for v in versions:
                cfg = model_config_pb2().ModelConfig()
                cfg.CopyFrom(config)
                built[v] = EnsembleModel(cfg, v, steps, self.get)
            return built
        for v in versions:
            cfg = model_config_pb2().ModelConfig()
            cfg.CopyFrom(config)
            instances = build_instances(cfg, repo.version_path(name, v, cfg), v, self.options)
            warm_up(cfg, repo.model_dir(name), instances)
            built[v] = LoadedModel(
                cfg, v, instances, self.options.inline_below_us, self._cache_for(cfg)
            )
        return built

    def _cache_for(self, config) -> ResponseCache | None:
        if not config.response_cache.enable:
            return None
        if self.cache is None:
            raise invalid(
                f"model '{config.name}': config.pbtxt enables response_cache, but this server "
                "has no response cache; start it with --response-cache-mb N (Triton: "
                "--cache-config local,size=N) or set enable: false"
            )
        return self.cache

    def _install(self, name: str, versions: dict[int, LoadedModel]) -> None:
        self._models[name] = versions
        self._latest[name] = versions[max(versions)]
        self._state[name] = ("READY", "")

    async def unload(self, name: str) -> None:
        """Stop routing to a model, answer its queued requests, then release it."""
        if self.frozen:
            raise ServeError("FAILED_PRECONDITION", self.frozen)
        async with self._lock(name):
            versions = self._models.pop(name, None)
            self._latest.pop(name, None)
            if versions is None:
                raise not_found(f"model '{name}' is not loaded")
            self._state[name] = ("UNAVAILABLE", "unloaded")
            for model in versions.values():
                await model.close()
            log.info("model unloaded", extra=kv(model=name))

    def add_python_model(
        self,
        name: str,
        fn: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
        inputs: list[tuple[str, str, list[int]]],
        outputs: list[tuple[str, str, list[int]]],
        *,
        max_batch_size: int = 0,
        dynamic_batching: dict | None = None,
        instances: int = 1,
        extra: dict | None = None,
    ) -> LoadedModel:
        """Serve a Python callable. inputs/outputs: (name, datatype like 'FP32', dims);
        ``extra``: more ModelConfig fields in JSON form (e.g. batch_input)."""
        from google.protobuf import json_format

        mc = model_config_pb2()
        spec = {
            "name": name,
            "backend": "python",
            "max_batch_size": max_batch_size,
            "input": [
                {"name": n, "data_type": datatype_to_config_type(t), "dims": d}
                for n, t, d in inputs
            ],
            "output": [
                {"name": n, "data_type": datatype_to_config_type(t), "dims": d}
                for n, t, d in outputs
            ],
            "instance_group": [{"count": instances, "kind": "KIND_CPU"}],
        }
        if dynamic_batching is not None:
            spec["dynamic_batching"] = dynamic_batching
        spec.update(extra or {})
        config = json_format.ParseDict(spec, mc.ModelConfig())
        validate_config(config, name)
        backends: list[B.Backend] = [B.PythonCallableBackend(fn) for _ in range(instances)]
        warm_up(config, Path("."), backends)
        model = LoadedModel(config, 1, backends, cache=self._cache_for(config))
        self._install(name, {1: model})
        return model

    async def close(self) -> None:
        """Drain every model, then release them."""
        for name in list(self._models):
            for model in self._models.pop(name).values():
                await model.close()
            self._latest.pop(name, None)

    # ---------------------------------------------------------------- index
    def index(self, ready_only: bool = False) -> list[dict]:
        names = set(self._state) | set(self._models)
        if self.repository is not None:
            names |= set(self.repository.model_names())
        out = []
        for name in sorted(names):
            versions = self._models.get(name)
            if versions:
                out += [
                    {"name": name, "version": str(v), "state": "READY", "reason": ""}
                    for v in sorted(versions)
                ]
            elif not ready_only:
                state, reason = self._state.get(name, ("UNAVAILABLE", "not loaded"))
                out.append({"name": name, "version": "", "state": state, "reason": reason})
        return out
