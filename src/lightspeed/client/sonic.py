"""The SONIC pattern for asyncio event loops (see ``docs/serving.md`` for a worked example)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import LightspeedError, require

log = logging.getLogger("lightspeed.client")

Arrays = dict[str, np.ndarray]
Fallback = Callable[[Arrays], Mapping[str, np.ndarray]]

# gRPC status names after which trying again (elsewhere or later) can succeed
RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED"})
# ... and after which the endpoint itself is considered down
ENDPOINT_DOWN = frozenset({"UNAVAILABLE"})
# gRPC channel options for every endpoint. A refused connection otherwise backs off
# exponentially up to 2 minutes, and a restarted server would stay out of rotation
# long after the health probe could see it back; messages as large as tritonclient's.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class InferenceError(LightspeedError):
    """A request failed for good (bad input, unknown model, or retries and fallback exhausted)."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ModelSpec:
    """What the client learned from ModelConfig (as CMS SONIC reads it)."""

    name: str
    max_batch_size: int
    inputs: dict[str, tuple[str, tuple[int, ...]]]  # name -> (datatype, dims without batch)
    outputs: dict[str, tuple[str, tuple[int, ...]]]


@dataclass
class ClientStats:
    requests: int = 0  # server requests sent (after splitting)
    events: int = 0
    remote_events: int = 0
    fallback_events: int = 0
    retries: int = 0
    failures: int = 0


@dataclass
class Endpoint:
    """One server. ``outstanding`` feeds least-outstanding-requests selection."""

    url: str
    client: Any = None  # tritonclient.grpc.aio.InferenceServerClient once connected
    outstanding: int = 0
    down_until: float = 0.0  # monotonic time before which it is skipped
    failures: int = 0
    stream: Any = None  # _StreamSession when the client streams

    def available(self, now: float) -> bool:
        return now >= self.down_until


def _status_name(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    text = str(status() if callable(status) else status or "")
    return text.rsplit(".", 1)[-1] if text else "UNAVAILABLE"


def local_fallback(source) -> Fallback:
    """A local inference function from a callable, an .onnx file or a compiled model directory."""
    if callable(source):
        return source
    path = Path(source)
    if path.is_dir():
        from lightspeed.quantize import load_compiled

        model = load_compiled(str(path))
        fn = model.predict_dict
        return _with_inputs(fn, list(model.input_names))
    if path.suffix == ".onnx" and path.is_file():
        ort = require("onnxruntime", "serve", "local ONNX fallback")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]

        def run(inputs: Arrays) -> Arrays:
            return dict(zip(names, session.run(names, inputs), strict=True))

        return _with_inputs(run, [i.name for i in session.get_inputs()])
    raise InferenceError(
        f"fallback {source!r} is neither a callable, an .onnx file nor a compiled model directory",
        "INVALID_ARGUMENT",
    )


class _StreamSession:
    """One ModelStreamInfer stream to an endpoint, multiplexing requests by id.

    A stream costs the server (and client) noticeably less per request than unary
    calls; responses may come back in any order and are matched to their request id.
    """

    def __init__(self, url: str) -> None:
        import grpc
        from tritonclient.grpc import service_pb2 as pb
        from tritonclient.grpc import service_pb2_grpc as pb_grpc

        self._pb = pb
        self._channel = grpc.aio.insecure_channel(url, options=CHANNEL_OPTIONS)
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._pending: dict[str, tuple[asyncio.Future, ModelSpec | None]] = {}
        self._next = 0
        self.broken: Exception | None = None
        call = pb_grpc.GRPCInferenceServiceStub(self._channel).ModelStreamInfer(self._requests())
        self._reader = asyncio.ensure_future(self._read(call))

    async def _requests(self):
        while (req := await self._outbox.get()) is not None:
            yield req

    async def _read(self, call) -> None:
        try:
            async for msg in call:
                rid = msg.infer_response.id
                entry = self._pending.pop(rid, None)
                if entry is None or entry[0].done():
                    continue  # timed out already
                future, spec = entry
                if msg.error_message:
                    future.set_exception(InferenceError(msg.error_message, "STREAM_ERROR"))
                else:
                    future.set_result(_decode_outputs(msg.infer_response, spec))
            raise InferenceError("the server closed the stream", "UNAVAILABLE")
        except Exception as exc:
            code = _status_name(exc) if not isinstance(exc, InferenceError) else exc.code
            self._fail_all(InferenceError(f"stream broke: {_message(exc)}", code))

    def _fail_all(self, exc: InferenceError) -> None:
        self.broken = exc
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()

    def submit(self, model: str, version: str, inputs: Arrays, spec: ModelSpec | None):
        if self.broken is not None:
            raise self.broken
        pb = self._pb
        rid = str(self._next)
        self._next += 1
        req = pb.ModelInferRequest(model_name=model, model_version=version, id=rid)
        for name, arr in inputs.items():
            datatype = _datatype(arr, spec, name)
            arr = np.ascontiguousarray(arr, dtype=_np_dtype(datatype))
            req.inputs.add(name=name, datatype=datatype, shape=arr.shape)
            req.raw_input_contents.append(arr.tobytes())
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = (future, spec)
        self._outbox.put_nowait(req)
        return future

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        self._reader.cancel()
        await self._channel.close()


def _decode_outputs(resp, spec: ModelSpec | None) -> Arrays:
    out = {}
    raws = resp.raw_output_contents
    for i, t in enumerate(resp.outputs):
        dtype = _np_dtype(t.datatype)
        if i < len(raws):
            arr = np.frombuffer(raws[i], dtype)
        else:
            field = "fp32_contents" if t.datatype == "FP32" else "fp64_contents"
            arr = np.asarray(getattr(t.contents, field), dtype)
        out[t.name] = arr.reshape(list(t.shape))
    if spec is not None:
        return {n: out[n] for n in spec.outputs if n in out}
    return out


def _with_inputs(fn: Fallback, names: list[str]) -> Fallback:
    """Wrap ``fn`` so the client knows the input names when no server gave a config."""

    def call(inputs: Arrays) -> Mapping[str, np.ndarray]:
        return fn(inputs)

    call.input_names = names  # type: ignore[attr-defined]
    return call


@dataclass
class SonicClient:
    """Async client for one model on one or more Triton-compatible gRPC endpoints.

    Use as ``async with SonicClient(...) as c: out = await c.infer_event(x)``.
    """

    urls: str | Sequence[str]
    model: str
    version: str = ""
    timeout_s: float = 5.0  # per server request (gRPC deadline)
    retries: int = 2  # extra attempts for retryable failures
    backoff_s: float = 0.01  # first retry delay; doubles each attempt
    cooldown_s: float = 2.0  # how long an unreachable endpoint is skipped
    fallback: object = None  # callable / .onnx / compiled dir: local inference when offline
    streaming: bool = False  # send requests on one ModelStreamInfer stream per endpoint
    health_interval_s: float = 0.0  # > 0: probe every endpoint's ModelReady this often
    spec: ModelSpec | None = None  # taken from the server's ModelConfig when None
    # one event = one batch item of variable size (the model uses ragged batching): each
    # input is sent as [1, *event shape] and the outputs come back without that axis
    ragged: bool = False
    stats: ClientStats = field(default_factory=ClientStats)

    def __post_init__(self) -> None:
        urls = [self.urls] if isinstance(self.urls, str) else list(self.urls)
        if not urls:
            raise InferenceError("SonicClient needs at least one server URL", "INVALID_ARGUMENT")
        self.endpoints = [Endpoint(u) for u in urls]
        self._fallback = local_fallback(self.fallback) if self.fallback is not None else None
        self._rr = 0
        self._health_task: asyncio.Task | None = None
        self._grpc = require("tritonclient.grpc.aio", "serve", "the SONIC client")

    # ------------------------------------------------------------------ connection
    async def __aenter__(self) -> SonicClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open channels and read the model config (from any endpoint that answers)."""
        for ep in self.endpoints:
            ep.client = self._grpc.InferenceServerClient(ep.url, channel_args=CHANNEL_OPTIONS)
        if self.health_interval_s > 0 and self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop())
        if self.spec is not None:
            return
        errors = []
        for ep in self.endpoints:
            try:
                resp = await ep.client.get_model_config(
                    self.model, self.version, client_timeout=self.timeout_s
                )
                self.spec = _spec_from_config(resp.config)
                return
            except Exception as exc:  # tritonclient raises InferenceServerException
                errors.append(f"{ep.url}: {exc}")
                self._mark_down(ep, _status_name(exc))
        if self._fallback is None:
            raise InferenceError(
                "no server answered ModelConfig for "
                f"'{self.model}' ({'; '.join(errors)}); start one or pass fallback=",
                "UNAVAILABLE",
            )
        log.warning("no server reachable; using the local fallback: %s", "; ".join(errors))

    async def check_health(self) -> list[bool]:
        """Ask every endpoint whether the model is ready; take failing ones out of
        rotation and put recovered ones back. Returns the readiness per endpoint."""
        ready = []
        for ep in self.endpoints:
            if ep.client is None:
                ready.append(False)
                continue
            try:
                ok = bool(
                    await ep.client.is_model_ready(self.model, self.version, client_timeout=1.0)
                )
            except Exception:
                ok = False
            if ok:
                ep.down_until = 0.0
            else:
                ep.down_until = time.monotonic() + max(self.cooldown_s, self.health_interval_s)
            ready.append(ok)
        return ready

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            await self.check_health()

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        for ep in self.endpoints:
            if ep.stream is not None:
                await ep.stream.close()
                ep.stream = None
            if ep.client is not None:
                await ep.client.close()
                ep.client = None

    async def statistics(self) -> list[dict]:
        """ModelStatistics from every reachable endpoint (as JSON dicts)."""
        out = []
        for ep in self.endpoints:
            try:
                out.append(
                    await ep.client.get_inference_statistics(self.model, self.version, as_json=True)
                )
            except Exception as exc:
                log.warning("statistics from %s failed: %s", ep.url, exc)
        return out

    # ------------------------------------------------------------------ endpoint choice
    def _pick(self, exclude: set[int]) -> Endpoint | None:
        """Least outstanding requests among available endpoints (round robin on ties)."""
        now = time.monotonic()
        best = None
        n = len(self.endpoints)
        for k in range(n):
            i = (self._rr + k) % n
            ep = self.endpoints[i]
            if i in exclude or not ep.available(now) or ep.client is None:
                continue
            if best is None or ep.outstanding < best.outstanding:
                best = ep
        self._rr = (self._rr + 1) % n
        return best

    def _mark_down(self, ep: Endpoint, code: str) -> None:
        if code in ENDPOINT_DOWN:
            ep.failures += 1
            ep.down_until = time.monotonic() + self.cooldown_s

    # ------------------------------------------------------------------ inference
    def _as_inputs(self, data) -> Arrays:
        if isinstance(data, Mapping):
            return {k: np.asarray(v) for k, v in data.items()}
        if self.spec is None:
            names = getattr(self._fallback, "input_names", [])
            if len(names) == 1:
                return {names[0]: np.asarray(data)}
        if self.spec is None or len(self.spec.inputs) != 1:
            raise InferenceError(
                "pass a dict {input name: array} (the model has several inputs or no config)",
                "INVALID_ARGUMENT",
            )
        return {next(iter(self.spec.inputs)): np.asarray(data)}

    async def infer_event(self, data) -> Arrays:
        """Infer all objects of one event (batch dim = objects) as one request.

        ``data`` is an array (single-input models) or {input: array}. An event
        with more objects than the model's max_batch_size is split into
        several concurrent requests and the outputs are concatenated.
        """
        inputs = self._as_inputs(data)
        self.stats.events += 1
        if self.ragged:
            return await self._ragged_event(inputs)
        rows = len(next(iter(inputs.values())))
        if rows == 0 and self.spec is not None:
            return {n: np.zeros((0, *d), _np_dtype(t)) for n, (t, d) in self.spec.outputs.items()}
        mbs = self.spec.max_batch_size if self.spec is not None else 0
        try:
            if mbs and rows > mbs:
                parts = [
                    {k: v[i : i + mbs] for k, v in inputs.items()} for i in range(0, rows, mbs)
                ]
                results = await asyncio.gather(*(self._remote(p) for p in parts))
                out = {k: np.concatenate([r[k] for r in results]) for k in results[0]}
            else:
                out = await self._remote(inputs)
            self.stats.remote_events += 1
            return out
        except InferenceError as exc:
            if self._fallback is None or exc.code not in RETRYABLE:
                self.stats.failures += 1
                raise
            self.stats.fallback_events += 1
            return dict(await asyncio.to_thread(self._fallback, inputs))

    async def _ragged_event(self, inputs: Arrays) -> Arrays:
        """The whole event as one batch item; the server merges events of any size."""
        item = {k: v[np.newaxis] for k, v in inputs.items()}
        try:
            out = await self._remote(item)
            self.stats.remote_events += 1
        except InferenceError as exc:
            if self._fallback is None or exc.code not in RETRYABLE:
                self.stats.failures += 1
                raise
            self.stats.fallback_events += 1
            out = dict(await asyncio.to_thread(self._fallback, item))
        return {k: np.asarray(v)[0] for k, v in out.items()}

    async def _via_stream(self, ep: Endpoint, inputs: Arrays) -> Arrays:
        if ep.stream is None or ep.stream.broken is not None:
            if ep.stream is not None:
                await ep.stream.close()
            ep.stream = _StreamSession(ep.url)
        future = ep.stream.submit(self.model, self.version, inputs, self.spec)
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise InferenceError(
                f"{ep.url}: no response within {self.timeout_s} s", "DEADLINE_EXCEEDED"
            ) from None

    async def infer_events(self, events: Sequence) -> list[Arrays]:
        """Infer several events concurrently (each one request, as SONIC does per event)."""
        return list(await asyncio.gather(*(self.infer_event(e) for e in events)))

    async def _remote(self, inputs: Arrays) -> Arrays:
        grpc = self._grpc
        tried: set[int] = set()
        last: Exception | None = None
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            ep = self._pick(tried)
            if ep is None:
                tried.clear()  # everyone failed once; allow any available endpoint again
                ep = self._pick(tried)
            if ep is None:
                break  # every endpoint is cooling down
            idx = self.endpoints.index(ep)
            if self.spec is None:  # offline at connect time: learn the config now
                try:
                    resp = await ep.client.get_model_config(
                        self.model, self.version, client_timeout=self.timeout_s
                    )
                    self.spec = _spec_from_config(resp.config)
                except Exception as exc:
                    last = exc
                    code = _status_name(exc)
                    self._mark_down(ep, code)
                    tried.add(idx)
                    continue
            ep.outstanding += 1
            self.stats.requests += 1
            try:
                if self.streaming:
                    return await self._via_stream(ep, inputs)
                req_inputs = []
                for name, arr in inputs.items():
                    datatype = _datatype(arr, self.spec, name)
                    i = grpc.InferInput(name, list(arr.shape), datatype)
                    i.set_data_from_numpy(np.ascontiguousarray(arr, dtype=_np_dtype(datatype)))
                    req_inputs.append(i)
                result = await ep.client.infer(
                    self.model, req_inputs, model_version=self.version,
                    client_timeout=self.timeout_s,
                )  # fmt: skip
                names = list(self.spec.outputs) if self.spec else [
                    o.name for o in result.get_response().outputs
                ]  # fmt: skip
                return {n: result.as_numpy(n) for n in names}
            except Exception as exc:
                code = exc.code if isinstance(exc, InferenceError) else _status_name(exc)
                last = exc
                if code not in RETRYABLE:
                    raise InferenceError(f"{ep.url}: {_message(exc)}", code) from None
                self._mark_down(ep, code)
                tried.add(idx)
                if attempt < self.retries:
                    self.stats.retries += 1
                    await asyncio.sleep(delay)
                    delay *= 2
            finally:
                ep.outstanding -= 1
        code = _status_name(last) if last is not None else "UNAVAILABLE"
        detail = _message(last) if last is not None else "every endpoint is cooling down"
        raise InferenceError(
            f"model '{self.model}': no server answered after {self.retries + 1} attempts "
            f"({detail})",
            code if code in RETRYABLE else "UNAVAILABLE",
        )


def _message(exc: Exception | None) -> str:
    msg = getattr(exc, "message", None)
    return str(msg() if callable(msg) else exc)


_NP = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT32": np.int32,
       "INT64": np.int64, "INT8": np.int8, "INT16": np.int16, "UINT8": np.uint8,
       "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "BOOL": np.bool_}  # fmt: skip


def _np_dtype(datatype: str):
    return _NP[datatype]


def _datatype(arr: np.ndarray, spec: ModelSpec | None, name: str) -> str:
    if spec is not None and name in spec.inputs:
        return spec.inputs[name][0]
    for k, v in _NP.items():
        if np.dtype(v) == arr.dtype:
            return k
    raise InferenceError(f"input '{name}' has unsupported dtype {arr.dtype}", "INVALID_ARGUMENT")


def _spec_from_config(config) -> ModelSpec:
    from tritonclient.grpc import model_config_pb2 as mc

    def tensors(items):
        out = {}
        for t in items:
            name = mc.DataType.Name(t.data_type).removeprefix("TYPE_")
            out[t.name] = (name, tuple(int(d) for d in t.dims))
        return out

    return ModelSpec(
        config.name, config.max_batch_size, tensors(config.input), tensors(config.output)
    )
