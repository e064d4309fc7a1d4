"""Sequence batching: stateful models that see each sequence's requests in order.

A client tags every request of a sequence with ``sequence_id`` (Triton's
correlation id) and marks the first with ``sequence_start`` and the last with
``sequence_end``. The scheduler runs a sequence's requests one at a time, in
order, and gives the model control tensors per batch row, as Triton does:

* ``CONTROL_SEQUENCE_START`` / ``_END``: the row's request starts / ends its sequence;
* ``CONTROL_SEQUENCE_READY``: the row holds a request (direct strategy pads idle slots);
* ``CONTROL_SEQUENCE_CORRID``: the sequence id.

Two strategies. **direct**: each sequence owns a batch slot (instance, row) from
start to end, so a model may keep per-slot state itself; a batch spans the
instance's slots up to the highest busy one, idle slots with READY false and
zero inputs; sequences wait in a backlog while every slot is taken.
**oldest**: the sequences whose next request waited longest are batched
together, at most one request per sequence per batch.

Implicit state (``state``): the scheduler feeds a sequence's ``input_name``
tensor from the ``output_name`` the model returned on its previous request
(``initial_state`` zeros, or zeros, on the first), so a recurrent model needs no
client-side state. A sequence idle for ``max_sequence_idle_microseconds`` is
released; its next request must start again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lightspeed.serve.batcher import FailureLog, ModelStats, as_serve_error
from lightspeed.serve.errors import ServeError, invalid
from lightspeed.serve.protocol import DATATYPE_TO_NUMPY, config_type_to_datatype

_ns = time.monotonic_ns
CONTROL_KINDS = ("START", "END", "READY", "CORRID")


@dataclass(frozen=True)
class Control:
    kind: str  # START, END, READY or CORRID
    name: str  # the model input that receives it
    dtype: np.dtype
    values: tuple = (0, 1)  # (false, true) for the flags


@dataclass(frozen=True)
class StateSpec:
    input_name: str
    output_name: str
    dtype: np.dtype
    dims: tuple[int, ...]


@dataclass(frozen=True)
class SequencePolicy:
    strategy: str  # "direct" or "oldest"
    controls: tuple[Control, ...]
    states: tuple[StateSpec, ...]
    idle_ns: int
    max_batch_size: int
    max_queue_delay_ns: int = 0
    max_candidates: int = 0  # oldest: sequences considered at once (0: max_batch_size)


def sequence_policy(config, name: str, mc) -> SequencePolicy | None:
    """The checked sequence_batching settings (``mc``: the model_config module), or None."""
    if not config.HasField("sequence_batching"):
        return None
    sb = config.sequence_batching
    where = f"model '{name}': sequence_batching"
    if sb.iterative_sequence:
        raise invalid(f"{where}: iterative_sequence is not supported")
    controls = []
    for ci in sb.control_input:
        for c in ci.control:
            kind = mc.ModelSequenceBatching.Control.Kind.Name(c.kind).removeprefix(
                "CONTROL_SEQUENCE_"
            )
            if kind == "CORRID":
                datatype = config_type_to_datatype(mc.DataType.Name(c.data_type))
                if datatype not in ("INT32", "INT64", "UINT32", "UINT64"):
                    raise invalid(f"{where}: CORRID control '{ci.name}' needs an integer type")
                controls.append(Control(kind, ci.name, np.dtype(DATATYPE_TO_NUMPY[datatype])))
            elif len(c.int32_false_true) == 2:
                controls.append(
                    Control(kind, ci.name, np.dtype(np.int32), tuple(c.int32_false_true))
                )
            elif len(c.fp32_false_true) == 2:
                values = tuple(c.fp32_false_true)
                controls.append(Control(kind, ci.name, np.dtype(np.float32), values))
            elif len(c.bool_false_true) == 2:
                controls.append(Control(kind, ci.name, np.dtype(bool), tuple(c.bool_false_true)))
            else:
                raise invalid(
                    f"{where}: control '{ci.name}' {kind} needs int32_false_true, "
                    "fp32_false_true or bool_false_true with two values"
                )
    states = []
    for st in sb.state:
        datatype = config_type_to_datatype(mc.DataType.Name(st.data_type))
        if datatype not in DATATYPE_TO_NUMPY or any(d < 1 for d in st.dims):
            raise invalid(
                f"{where}: state '{st.input_name}' needs a numeric data_type and positive dims"
            )
        for init in st.initial_state:
            if init.WhichOneof("state_data") == "data_file":
                raise invalid(
                    f"{where}: state '{st.input_name}' initial_state data_file is not "
                    "supported; use zero_data"
                )
        states.append(
            StateSpec(
                st.input_name,
                st.output_name,
                np.dtype(DATATYPE_TO_NUMPY[datatype]),
                tuple(int(d) for d in st.dims),
            )
        )
    strategy = "oldest" if sb.WhichOneof("strategy_choice") == "oldest" else "direct"
    s = sb.oldest if strategy == "oldest" else sb.direct
    return SequencePolicy(
        strategy=strategy,
        controls=tuple(controls),
        states=tuple(states),
        idle_ns=(sb.max_sequence_idle_microseconds or 1_000_000) * 1000,
        max_batch_size=max(1, config.max_batch_size),
        max_queue_delay_ns=s.max_queue_delay_microseconds * 1000,
        max_candidates=sb.oldest.max_candidate_sequences if strategy == "oldest" else 0,
    )


class _Req:
    __slots__ = ("arrival", "end", "future", "id", "inputs", "outputs", "start")

    def __init__(self, inputs, outputs, future, start, end, rid):
        self.inputs = inputs
        self.outputs = outputs
        self.future = future
        self.start = start
        self.end = end
        self.id = rid
        self.arrival = _ns()


class _Seq:
    __slots__ = ("corrid", "ended", "inflight", "last", "pending", "slot", "state")

    def __init__(self, corrid) -> None:
        self.corrid = corrid
        self.pending: deque[_Req] = deque()
        self.inflight = False
        self.slot: tuple[int, int] | None = None  # direct: (instance index, row)
        self.state: dict[str, np.ndarray] = {}
        self.last = _ns()
        self.ended = False  # its END request was accepted


class SequenceScheduler:
    """Runs a stateful model's requests sequence by sequence (see the module doc)."""

    def __init__(self, name, instances, execute, policy: SequencePolicy, output_names):
        self.name = name
        self.policy = policy
        self.stats = ModelStats()
        self._execute = execute
        self._outputs = list(output_names)
        self._state_outputs = [s.output_name for s in policy.states]
        self._instances = list(instances)
        self._free = list(range(len(instances)))
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(instances)))
        self._seqs: dict[object, _Seq] = {}
        self._backlog: deque[_Seq] = deque()  # direct: started sequences without a slot
        self._slots: list[list[_Seq | None]] = [[None] * policy.max_batch_size for _ in instances]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running = 0
        self._closed = False
        self._log_failure = FailureLog()

    # ------------------------------------------------------------------ the interface
    @property
    def queued(self) -> int:
        return sum(len(s.pending) for s in self._seqs.values())

    @property
    def busy(self) -> bool:
        return self._running > 0 or self.queued > 0

    def refused(self, exc: ServeError, request_id: str = "") -> None:
        self.stats.failed(exc.code)
        self._log_failure(self.name, request_id, exc)

    def submit(
        self,
        inputs: dict,
        rows: int,
        outputs: list[str] | None,
        timeout_ns: int = 0,
        request_id: str = "",
        priority: int = 0,
        sequence: tuple | None = None,
    ) -> asyncio.Future:
        if self._closed:
            raise ServeError("UNAVAILABLE", f"model '{self.name}' is unloading; retry later")
        if sequence is None or not sequence[0]:
            raise invalid(
                f"model '{self.name}' is a sequence model: every request needs a non-zero "
                "sequence_id (and sequence_start on the first of each sequence)"
            )
        if rows != 1:
            raise invalid(f"model '{self.name}': a sequence request carries one row, not {rows}")
        corrid, start, end = sequence
        if not isinstance(corrid, int) and any(c.kind == "CORRID" for c in self.policy.controls):
            raise invalid(
                f"model '{self.name}': sequence_id {corrid!r} must be an integer, since the "
                "model takes it as a CORRID control tensor"
            )
        loop = self._loop = self._loop or asyncio.get_running_loop()
        self._release_idle(_ns())
        seq = self._seqs.get(corrid)
        if start:
            if seq is not None and not seq.ended:
                raise invalid(
                    f"model '{self.name}': sequence {corrid} is already running; end it "
                    "(sequence_end) before starting it again"
                )
            if seq is None:
                seq = self._seqs[corrid] = _Seq(corrid)
                if self.policy.strategy == "direct":
                    self._backlog.append(seq)
            else:  # restarted after its end: a fresh state once the old requests ran
                seq.ended = False
        elif seq is None or seq.ended:
            raise invalid(
                f"model '{self.name}': sequence {corrid} is not running (never started, "
                "ended, or idle longer than max_sequence_idle_microseconds); send "
                "sequence_start on its first request"
            )
        fut = loop.create_future()
        seq.pending.append(_Req(inputs, outputs, fut, start, end, request_id))
        seq.last = _ns()
        if end:
            seq.ended = True
        loop.call_soon(self._schedule)
        return fut

    async def drain(self) -> None:
        while self.busy:
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        self._closed = True
        if self._loop is not None:
            await self.drain()
        if self._timer is not None:
            self._timer.cancel()
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ scheduling
    def _release_idle(self, now: int) -> None:
        for corrid, seq in list(self._seqs.items()):
            if not seq.pending and not seq.inflight and now - seq.last > self.policy.idle_ns:
                self._release(corrid, seq)

    def _release(self, corrid, seq: _Seq) -> None:
        self._seqs.pop(corrid, None)
        if seq.slot is not None:
            i, row = seq.slot
            self._slots[i][row] = None
        with contextlib.suppress(ValueError):
            self._backlog.remove(seq)

    def _assign_slots(self) -> None:
        while self._backlog:
            for i, slots in enumerate(self._slots):
                if None in slots:
                    row = slots.index(None)
                    seq = self._backlog.popleft()
                    slots[row] = seq
                    seq.slot = (i, row)
                    break
            else:
                return

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = _ns()
        if self.policy.strategy == "direct":
            self._assign_slots()
            for i in list(self._free):
                rows = self._slots[i]
                ready = [s for s in rows if s is not None and s.pending and not s.inflight]
                if ready:
                    top = max(k for k, s in enumerate(rows) if s is not None and s.pending)
                    batch = [s if s is not None and s.pending else None for s in rows[: top + 1]]
                    self._dispatch(i, batch)
        else:
            while self._free:
                ready = sorted(
                    (s for s in self._seqs.values() if s.pending and not s.inflight),
                    key=lambda s: s.pending[0].arrival,
                )
                if not ready:
                    break
                limit = self.policy.max_batch_size
                wake = ready[0].pending[0].arrival + self.policy.max_queue_delay_ns
                if len(ready) < limit and now < wake:
                    loop = self._loop
                    assert loop is not None
                    self._timer = loop.call_at(loop.time() + (wake - now) / 1e9, self._schedule)
                    break
                picked: list[_Seq | None] = list(ready[:limit])
                self._dispatch(self._free[-1], picked)
        if self._seqs and self._loop is not None and self._timer is None:
            # release idle sequences even when no request arrives
            self._timer = self._loop.call_later(self.policy.idle_ns / 1e9, self._schedule)

    def _dispatch(self, i: int, batch: list[_Seq | None]) -> None:
        self._free.remove(i)
        self._running += 1
        reqs = []
        for s in batch:
            if s is not None:
                s.inflight = True
                reqs.append(s.pending[0])
        now = _ns()
        self.stats.queue_count += len(reqs)
        self.stats.queue_ns += sum(now - r.arrival for r in reqs)
        self._pool.submit(self._work, i, batch)

    # ------------------------------------------------------------------ worker thread
    def _work(self, i: int, batch: list[_Seq | None]) -> None:
        t0 = _ns()
        try:
            outcome: list = self._run(i, batch)
        except Exception as exc:  # a merged batch failed: run each sequence alone
            if sum(s is not None for s in batch) > 1:
                outcome = [
                    self._alone(i, batch, k) if s is not None else None for k, s in enumerate(batch)
                ]
            else:
                outcome = [exc if s is not None else None for s in batch]
        took = _ns() - t0
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._done, i, batch, outcome, took)

    def _alone(self, i: int, batch: list[_Seq | None], k: int):
        solo: list[_Seq | None] = [None] * len(batch)
        solo[k] = batch[k]
        if self.policy.strategy == "oldest":
            solo = [batch[k]]
        try:
            out = self._run(i, solo)
            return out[solo.index(batch[k])]
        except Exception as exc:
            return exc

    def _run(self, i: int, batch: list[_Seq | None]) -> list:
        """Execute one batch; per row the client outputs and the new state (or None)."""
        template = next(s for s in batch if s is not None).pending[0].inputs
        columns: dict[str, list[np.ndarray]] = {n: [] for n in template}
        for s in batch:
            for n, a in template.items():
                columns[n].append(s.pending[0].inputs[n] if s is not None else np.zeros_like(a))
        inputs = {n: np.concatenate(v) for n, v in columns.items()}
        for c in self.policy.controls:
            inputs[c.name] = np.array([[self._control(c, s)] for s in batch], c.dtype)
        for st in self.policy.states:
            rows = [
                s.state.get(st.input_name) if s is not None and not s.pending[0].start else None
                for s in batch
            ]
            zero = np.zeros((1, *st.dims), st.dtype)
            inputs[st.input_name] = np.concatenate([r if r is not None else zero for r in rows])
        result = self._execute(self._instances[i], inputs, self._outputs + self._state_outputs)
        out: list = []
        for k, s in enumerate(batch):
            if s is None:
                out.append(None)
                continue
            req = s.pending[0]
            names = req.outputs or self._outputs
            client = {n: result[n][k : k + 1] for n in names}
            state = {
                st.input_name: np.array(result[st.output_name][k : k + 1])
                for st in self.policy.states
            }
            out.append((client, state))
        return out

    @staticmethod
    def _control(c: Control, s: _Seq | None):
        if c.kind == "CORRID":
            return s.corrid if s is not None else 0
        if s is None:
            return c.values[0]
        req = s.pending[0]
        flag = {"START": req.start, "END": req.end, "READY": True}[c.kind]
        return c.values[1] if flag else c.values[0]

    # ------------------------------------------------------------------ completion (loop)
    def _done(self, i: int, batch: list[_Seq | None], outcome: list, took: int) -> None:
        self._free.append(i)
        self._running -= 1
        stats = self.stats
        now = _ns()
        ran = False
        for s, res in zip(batch, outcome, strict=True):
            if s is None:
                continue
            s.inflight = False
            req = s.pending.popleft()
            s.last = now
            if isinstance(res, BaseException) or res is None:
                err = as_serve_error(self.name, res or RuntimeError("no result"))
                stats.failed(err.code, now - req.arrival)
                self._log_failure(self.name, req.id, err)
                if not req.future.done():
                    req.future.set_exception(err)
            else:
                ran = True
                client, state = res
                s.state = state
                stats.success_count += 1
                stats.success_ns += now - req.arrival
                stats.inference_count += 1
                if not req.future.done():
                    req.future.set_result(client)
            if req.end and not s.pending:
                self._release(s.corrid, s)
        if ran:
            stats.execution_count += 1
            stats.infer_count += 1
            stats.infer_ns += took
            stats.last_inference_ms = time.time_ns() // 1_000_000
        self._schedule()
