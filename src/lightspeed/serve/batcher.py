"""Per-model scheduler: a bounded queue, the dynamic batcher, and instance dispatch.

Event driven, no scheduler task: :meth:`Scheduler.submit` and each finished
execution call :meth:`Scheduler._schedule`, which forms batches while a model
instance is free and arms one timer when it decides to wait for
``max_queue_delay``. Executions run on a thread pool (one thread per
instance) so the network loop never blocks; the merged inputs are built on
the worker thread, results are split back on the loop as views.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from lightspeed.errors import InputError
from lightspeed.serve.errors import ServeError
from lightspeed.serve.logs import kv
from lightspeed.serve.ragged import RaggedSpec

_ns = time.monotonic_ns
log = logging.getLogger("lightspeed.serve")

# request latency histogram bucket upper bounds (ns), Prometheus ``le`` in ms
LATENCY_BOUNDS_NS = tuple(
    int(ms * 1e6) for ms in (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
)


@dataclass(frozen=True)
class QueuePolicy:
    """Triton's ModelQueuePolicy for one priority level."""

    max_queue_size: int = 0  # 0: the model's bound
    default_timeout_ns: int = 0
    allow_timeout_override: bool = True
    delay_on_timeout: bool = False  # timeout_action DELAY: demote instead of failing


@dataclass(frozen=True)
class BatchingPolicy:
    """The scheduling part of a model config."""

    max_batch_size: int = 0  # 0: the model takes no batch dimension
    dynamic: bool = False  # merge requests (dynamic_batching present)
    preferred: tuple[int, ...] = ()
    max_queue_delay_ns: int = 0
    preserve_ordering: bool = False
    max_queue_size: int = 0  # 0: server default bound
    default_timeout_ns: int = 0  # 0: no queue timeout
    allow_timeout_override: bool = True
    # executions whose running average CPU time is below this run on the loop thread
    # itself, until the average exceeds twice this: for small models a thread hop (the
    # GIL hand-over) costs more than the model (0 disables)
    inline_below_ns: int = 0
    # inputs with allow_ragged_batch and the batch_input/batch_output entries (None: none)
    ragged: RaggedSpec | None = None
    # priority levels (0: one FIFO queue); level 1 is served first
    priority_levels: int = 0
    default_priority: int = 0
    # per-level queue policies that differ from the default one
    level_policies: tuple[tuple[int, QueuePolicy], ...] = ()
    delay_on_timeout: bool = False  # default policy's timeout_action DELAY

    def queue_policy(self, level: int) -> QueuePolicy:
        for lv, qp in self.level_policies:
            if lv == level:
                return qp
        return QueuePolicy(
            self.max_queue_size,
            self.default_timeout_ns,
            self.allow_timeout_override,
            self.delay_on_timeout,
        )


@dataclass
class BatchStats:
    count: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


@dataclass
class ModelStats:
    """Counters in Triton's ModelStatistics layout (durations in ns)."""

    inference_count: int = 0  # rows
    execution_count: int = 0  # backend executions
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    input_count: int = 0
    input_ns: int = 0
    infer_count: int = 0
    infer_ns: int = 0
    output_count: int = 0
    output_ns: int = 0
    last_inference_ms: int = 0
    rejected_count: int = 0  # queue full
    # response cache lookups (ns: lookup time; a miss also counts the insertion)
    cache_hit_count: int = 0
    cache_hit_ns: int = 0
    cache_miss_count: int = 0
    cache_miss_ns: int = 0
    # failed requests by status code name (INVALID_ARGUMENT, INTERNAL, DEADLINE_EXCEEDED, ...)
    fail_reasons: dict[str, int] = field(default_factory=dict)
    batches: dict[int, BatchStats] = field(default_factory=dict)
    # successful request latency counts per LATENCY_BOUNDS_NS bucket (+ overflow)
    latency_hist: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_NS) + 1))

    def failed(self, code: str, ns: int = 0) -> None:
        """Count one failed request by its status code (``ns``: its time in the server)."""
        self.fail_count += 1
        self.fail_ns += ns
        self.fail_reasons[code] = self.fail_reasons.get(code, 0) + 1


class _Request:
    __slots__ = (
        "arrival",
        "deadline",
        "delay",
        "future",
        "id",
        "inputs",
        "key",
        "level",
        "outputs",
        "rows",
    )

    def __init__(self, inputs, rows, outputs, future, arrival, deadline, key=None, rid="", level=0):
        self.inputs = inputs
        self.rows = rows
        self.outputs = outputs
        self.future = future
        self.arrival = arrival
        self.deadline = deadline
        self.key = key  # non-batch shapes: only requests that agree are merged
        self.id = rid
        self.level = level  # priority level (0 without levels); lower is served first
        self.delay = False  # on timeout: demote behind everything (DELAY) instead of failing


def shape_key(inputs: dict) -> tuple:
    """What must agree for two requests to share a batch: each input's non-batch shape."""
    if len(inputs) == 1:
        return tuple(a.shape[1:] for a in inputs.values())
    return tuple(sorted((k, a.shape[1:]) for k, a in inputs.items()))


def as_serve_error(model: str, exc: BaseException) -> ServeError:
    """The status a client sees for a failed execution: its own data, or a server fault."""
    if isinstance(exc, ServeError):
        return exc
    # lightspeed's input checks and onnxruntime's InvalidArgument blame the request's data
    if isinstance(exc, InputError) or type(exc).__name__ == "InvalidArgument":
        return ServeError("INVALID_ARGUMENT", f"model '{model}': {exc}")
    return ServeError("INTERNAL", f"model '{model}' failed to execute: {type(exc).__name__}: {exc}")


class FailureLog:
    """Logs each failed request once, at most ``per_s`` lines a second, then a count."""

    def __init__(self, per_s: int = 20) -> None:
        self.per_s = per_s
        self._window = -(10**18)
        self._lines = 0
        self._dropped = 0

    def __call__(self, model: str, rid: str, exc: ServeError) -> None:
        now = _ns()
        if now - self._window >= 1_000_000_000:
            if self._dropped:
                log.warning(
                    "request failures not logged",
                    extra=kv(model=model, count=self._dropped, within_s=1),
                )
            self._window, self._lines, self._dropped = now, 0, 0
        if self._lines >= self.per_s:
            self._dropped += 1
            return
        self._lines += 1
        level = logging.ERROR if exc.code == "INTERNAL" else logging.WARNING
        log.log(
            level,
            "request failed",
            extra=kv(model=model, request_id=rid or "-", status=exc.code, reason=exc.message),
        )


Execute = Callable[[object, dict, list], dict]  # (instance, inputs, outputs) -> outputs


class Scheduler:
    """Queues requests for one model version and runs them on its instances."""

    def __init__(
        self,
        name: str,
        instances: list,
        execute: Execute,
        policy: BatchingPolicy,
        output_names: list[str],
        *,
        default_max_queue: int = 4096,
    ) -> None:
        self.name = name
        self.policy = policy
        self.stats = ModelStats()
        self._execute = execute
        self._all_outputs = output_names
        self._free = list(instances)
        self._n_instances = len(instances)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(instances)), thread_name_prefix=f"ls-{name}"
        )
        self._queue: deque[_Request] = deque()
        self._max_queue = policy.max_queue_size or default_max_queue
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = 0
        self._idle: asyncio.Event | None = None
        self._preferred = frozenset(policy.preferred)
        self._max_rows = policy.max_batch_size if policy.max_batch_size > 0 else 1
        self._closed = False
        self._soon = False  # a _schedule call is already pending for this loop tick
        # running average execution time (-1: unknown, so the first execution uses a thread)
        self._avg_exec_ns = -1
        self._inline = False
        # preserve_ordering: finished batches wait for all earlier ones
        self._seq_next = 0
        self._seq_deliver = 0
        self._held: dict[int, tuple] = {}
        self._rejected_logged_at = -(10**18)  # monotonic ns of the last queue-full log line
        self._rejected_unlogged = 0
        self._log_failure = FailureLog()

    # ------------------------------------------------------------------ submit
    def submit(
        self,
        inputs: dict,
        rows: int,
        outputs: list[str] | None,
        timeout_ns: int = 0,
        request_id: str = "",
        priority: int = 0,
    ) -> asyncio.Future:
        """Enqueue one validated request; the future resolves to its output arrays.

        ``priority``: the request's level (1 is served first; 0 means the default level).
        """
        if self._closed:
            raise ServeError("UNAVAILABLE", f"model '{self.name}' is unloading; retry later")
        policy = self.policy
        level = 0
        qp = None
        if policy.priority_levels:
            level = priority or policy.default_priority
            if not 1 <= level <= policy.priority_levels:
                raise ServeError(
                    "INVALID_ARGUMENT",
                    f"model '{self.name}': priority {priority} is outside 1.."
                    f"{policy.priority_levels} (the config's priority_levels; 0 means the "
                    f"default level {policy.default_priority})",
                )
            qp = policy.queue_policy(level)
        elif priority:
            raise ServeError(
                "INVALID_ARGUMENT",
                f"model '{self.name}': the request sets priority {priority}, but the model has "
                "no dynamic_batching priority_levels",
            )
        bound = (qp.max_queue_size if qp is not None else 0) or self._max_queue
        q = self._queue
        waiting = len(q) if qp is None else sum(1 for r in q if r.level == level)
        if waiting >= bound or len(self._queue) >= self._max_queue:
            self.stats.rejected_count += 1
            reasons = self.stats.fail_reasons
            reasons["RESOURCE_EXHAUSTED"] = reasons.get("RESOURCE_EXHAUSTED", 0) + 1
            self._log_rejection()
            where = f" at priority {level}" if qp is not None else ""
            raise ServeError(
                "RESOURCE_EXHAUSTED",
                f"model '{self.name}': queue is full ({waiting} requests waiting{where}); "
                "retry later or raise max_queue_size / add instances",
            )
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._idle = asyncio.Event()
        now = _ns()
        if qp is not None:
            if not timeout_ns or not qp.allow_timeout_override:
                timeout_ns = qp.default_timeout_ns
        elif not timeout_ns or not policy.allow_timeout_override:
            timeout_ns = policy.default_timeout_ns
        deadline = now + timeout_ns if timeout_ns else 0
        fut = loop.create_future()
        if not policy.dynamic and not self._queue and self._free and self._inline:
            # nothing to merge with and the model is tiny: run it now, skipping two loop ticks
            req = _Request(inputs, rows, outputs, fut, now, 0, None, request_id)
            instance = self._free.pop()
            self._running += 1
            self.stats.queue_count += 1
            seq = self._seq_next
            self._seq_next += 1
            self._done(instance, [req], seq, self._run(instance, [req]), reschedule=False)
            return fut
        ragged = policy.ragged
        if not policy.dynamic:
            key = None
        else:
            key = ragged.key(inputs) if ragged is not None else shape_key(inputs)
        req = _Request(inputs, rows, outputs, fut, now, deadline, key, request_id, level)
        if qp is None:
            self._queue.append(req)
        else:
            req.delay = qp.delay_on_timeout
            self._enqueue_at_level(req)
        if deadline:
            loop.call_at(loop.time() + timeout_ns / 1e9, self._expire_all)
        if not self._soon:
            # schedule once per loop tick, so requests that arrive together batch together
            self._soon = True
            loop.call_soon(self._schedule)
        return fut

    def _enqueue_at_level(self, req: _Request) -> None:
        """Insert behind every queued request of the same or a higher priority."""
        q = self._queue
        i = len(q)
        while i > 0 and q[i - 1].level > req.level:
            i -= 1
        q.insert(i, req)

    def _log_rejection(self) -> None:
        """Log queue-full rejections: the first at once, then one summary line a second."""
        now = _ns()
        self._rejected_unlogged += 1
        if now - self._rejected_logged_at >= 1_000_000_000:
            log.warning(
                "queue full",
                extra=kv(
                    model=self.name,
                    max_queue_size=self._max_queue,
                    rejected=self._rejected_unlogged,
                    status="RESOURCE_EXHAUSTED",
                    total_rejected=self.stats.rejected_count,
                ),
            )
            self._rejected_logged_at = now
            self._rejected_unlogged = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._running > 0

    # ------------------------------------------------------------------ scheduling
    def _expire_head(self, now: int) -> None:
        q = self._queue
        while q:
            req = q[0]
            if req.future.done():  # cancelled by a disconnected client
                q.popleft()
            elif req.deadline and now >= req.deadline:
                q.popleft()
                if req.delay:
                    self._demote(req)
                else:
                    self._fail_timeout(req, now)
            else:
                break

    def _demote(self, req: _Request) -> None:
        """timeout_action DELAY: the request waits behind everything else, without deadline."""
        req.deadline = 0
        req.level = self.policy.priority_levels + 1
        self._queue.append(req)

    def _expire_all(self) -> None:
        """Fail every queued request past its deadline, wherever it waits."""
        now = _ns()
        if any(r.deadline and now >= r.deadline for r in self._queue):
            keep: deque[_Request] = deque()
            late: list[_Request] = []
            for req in self._queue:
                if req.deadline and now >= req.deadline and not req.future.done():
                    if req.delay:
                        late.append(req)
                    else:
                        self._fail_timeout(req, now)
                elif not req.future.done():
                    keep.append(req)
            self._queue = keep
            for req in late:
                self._demote(req)
        self._schedule()

    def _fail_timeout(self, req: _Request, now: int) -> None:
        self._fail(
            req,
            ServeError(
                "DEADLINE_EXCEEDED",
                f"model '{self.name}': request timed out after "
                f"{(now - req.arrival) / 1e6:.1f} ms in the queue",
            ),
            now,
        )

    def _fail(self, req: _Request, exc: ServeError, now: int) -> None:
        """Answer one request with an error: counted by reason, logged once."""
        self.stats.failed(exc.code, now - req.arrival)
        self._log_failure(self.name, req.id, exc)
        if not req.future.done():
            req.future.set_exception(exc)

    def refused(self, exc: ServeError, request_id: str = "") -> None:
        """Count and log a request refused before it was queued (bad shape, NaN, ...)."""
        self.stats.failed(exc.code)
        self._log_failure(self.name, request_id, exc)

    def _take(self, now: int) -> list[_Request] | int:
        """A batch to run now, or the monotonic ns time to look again."""
        q = self._queue
        if not self.policy.dynamic:
            return [q.popleft()]
        max_rows = self._max_rows
        total = n = pref_n = 0
        full = False
        key = q[0].key
        picked: list[_Request] = []  # filled only once a request of another shape is skipped
        skipped = False
        for req in q:
            if req.key != key:  # Triton merges only requests whose shapes agree
                if not skipped:
                    skipped = True
                    picked = list(q)[:n]
                continue
            if total + req.rows > max_rows:
                full = True
                break
            total += req.rows
            n += 1
            if skipped:
                picked.append(req)
            if total in self._preferred:
                pref_n = n
        delay = self.policy.max_queue_delay_ns
        if full or total == max_rows or not delay:
            take = n
        elif pref_n:
            take = pref_n
        else:
            wake = q[0].arrival + delay
            if now < wake:
                return wake
            take = n
        if not skipped:
            return [q.popleft() for _ in range(take)]
        batch = picked[:take]
        chosen = {id(r) for r in batch}
        self._queue = deque(r for r in q if id(r) not in chosen)
        return batch

    def _schedule(self) -> None:
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = _ns()
        while self._free and self._queue:
            self._expire_head(now)
            # deadlines in the middle of the queue are handled when they reach the head
            if not self._queue:
                break
            batch = self._take(now)
            if isinstance(batch, int):
                loop = self._loop
                assert loop is not None
                self._timer = loop.call_at(loop.time() + (batch - now) / 1e9, self._schedule)
                break
            self._dispatch(batch, now)
        if not self._queue and not self._running and self._idle is not None:
            self._idle.set()

    def _dispatch(self, batch: list[_Request], now: int) -> None:
        instance = self._free.pop()
        self._running += 1
        seq = self._seq_next
        self._seq_next += 1
        stats = self.stats
        for req in batch:
            stats.queue_ns += now - req.arrival
        stats.queue_count += len(batch)
        if self._idle is not None:
            self._idle.clear()
        if self._inline:
            self._done(instance, batch, seq, self._run(instance, batch), reschedule=False)
        else:
            self._pool.submit(self._work, instance, batch, seq)

    # ------------------------------------------------------------------ worker thread
    def _work(self, instance, batch: list[_Request], seq: int) -> None:
        outcome = self._run(instance, batch)
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._done, instance, batch, seq, outcome)

    def _run(self, instance, batch: list[_Request]) -> tuple:
        if self.policy.ragged is not None:
            return self._run_ragged(instance, batch)
        c0 = time.thread_time_ns()
        t0 = _ns()
        try:
            outputs = batch[0].outputs if len(batch) == 1 else None
            wanted = self._all_outputs if outputs is None else outputs
            if len(batch) == 1:
                inputs = batch[0].inputs
            else:
                first = batch[0].inputs
                inputs = {k: np.concatenate([r.inputs[k] for r in batch]) for k in first}
            t1 = _ns()
            result = self._execute(instance, inputs, wanted)
            t2 = _ns()
            # the CPU time decides inline execution: wall time would count the moments this
            # thread was preempted (by the clients on a small box), flip a tiny model to
            # worker threads and make every request pay the GIL hand-over
            outcome: tuple = (result, None, t1 - t0, t2 - t1, time.thread_time_ns() - c0, None)
        except Exception as exc:  # report, never kill the worker
            # one request's bad data must not fail the others: run each alone
            singles = [self._run_alone(instance, r) for r in batch] if len(batch) > 1 else None
            outcome = (None, exc, 0, 0, 0, singles)
        return outcome

    def _run_alone(self, instance, req: _Request) -> tuple:
        try:
            if self.policy.ragged is not None:
                return self._execute_ragged(instance, [req])[0], None
            return self._execute(instance, req.inputs, req.outputs or self._all_outputs), None
        except Exception as exc:
            return None, exc

    def _run_ragged(self, instance, batch: list[_Request]) -> tuple:
        """One execution for the whole batch; results are split per request here."""
        c0 = time.thread_time_ns()
        t0 = _ns()
        try:
            pieces = self._execute_ragged(instance, batch)
            t1 = _ns()
            ran = [(p, None) for p in pieces]
            return (None, None, 0, t1 - t0, time.thread_time_ns() - c0, ran)
        except Exception as exc:  # one request's bad data must not fail the others
            alone = [self._run_alone(instance, r) for r in batch] if len(batch) > 1 else None
            return (None, exc, 0, 0, 0, alone)

    def _execute_ragged(self, instance, batch: list[_Request]) -> list[dict]:
        ragged = self.policy.ragged
        assert ragged is not None
        requests = [r.inputs for r in batch]
        result = self._execute(instance, ragged.merge(requests), self._all_outputs)
        pieces = ragged.split(result, requests, [r.rows for r in batch], self._all_outputs)
        return [
            {k: p[k] for k in r.outputs} if r.outputs else p
            for r, p in zip(batch, pieces, strict=True)
        ]

    # ------------------------------------------------------------------ completion (loop)
    def _done(
        self, instance, batch: list[_Request], seq: int, outcome: tuple, reschedule: bool = True
    ) -> None:
        self._free.append(instance)
        self._running -= 1
        if outcome[1] is None:
            limit = self.policy.inline_below_ns
            # clamped: one outlier (a garbage collection) must not flip the mode
            took = min(outcome[4], 4 * limit)
            avg = self._avg_exec_ns
            avg = self._avg_exec_ns = took if avg < 0 else avg + ((took - avg) >> 3)
            # hysteresis: a model that costs about the limit must not flip back and forth
            inline = avg < 2 * limit if self._inline else avg < limit
            if inline != self._inline:
                self._inline = inline
                log.debug(
                    "execution mode",
                    extra=kv(
                        model=self.name,
                        mode="inline" if inline else "threads",
                        avg_cpu_us=round(self._avg_exec_ns / 1e3),
                    ),
                )
        if self.policy.preserve_ordering and self._n_instances > 1:
            self._held[seq] = (batch, outcome)
            while self._seq_deliver in self._held:
                b, o = self._held.pop(self._seq_deliver)
                self._seq_deliver += 1
                self._deliver(b, o)
        else:
            self._deliver(batch, outcome)
        if reschedule:
            self._schedule()

    def _deliver(self, batch: list[_Request], outcome: tuple) -> None:
        result, exc, input_ns, infer_ns, _, singles = outcome
        stats = self.stats
        now = _ns()
        if singles is not None:
            # a ragged batch ran once (exc None); a failed merged batch ran per request
            self._deliver_singles(batch, singles, now, infer_ns if exc is None else -1)
            return
        if exc is not None:
            err = as_serve_error(self.name, exc)
            for req in batch:
                self._fail(req, err, now)
            return
        rows = 0
        if len(batch) == 1:
            req = batch[0]
            rows = req.rows
            if not req.future.done():
                req.future.set_result(result)
            lat = now - req.arrival
            stats.success_ns += lat
            stats.latency_hist[bisect_left(LATENCY_BOUNDS_NS, lat)] += 1
        else:
            offset = 0
            for req in batch:
                end = offset + req.rows
                if not req.future.done():
                    names = req.outputs or self._all_outputs
                    req.future.set_result({k: result[k][offset:end] for k in names})
                offset = end
                lat = now - req.arrival
                stats.success_ns += lat
                stats.latency_hist[bisect_left(LATENCY_BOUNDS_NS, lat)] += 1
            rows = offset
        output_ns = _ns() - now
        n = len(batch)
        stats.success_count += n
        stats.inference_count += rows
        stats.execution_count += 1
        stats.input_count += n
        stats.input_ns += input_ns * n
        stats.infer_count += n
        stats.infer_ns += infer_ns * n
        stats.output_count += n
        stats.output_ns += output_ns * n
        stats.last_inference_ms = time.time_ns() // 1_000_000
        b = stats.batches.get(rows)
        if b is None:
            b = stats.batches[rows] = BatchStats()
        b.count += 1
        b.input_ns += input_ns
        b.infer_ns += infer_ns
        b.output_ns += output_ns

    def _deliver_singles(
        self, batch: list[_Request], singles: list, now: int, infer_ns: int = -1
    ) -> None:
        """Answer a batch whose results are per request: a ragged batch that ran once
        (``infer_ns`` its time), or a batch retried request by request after it failed merged
        (``infer_ns`` -1)."""
        stats = self.stats
        merged = infer_ns >= 0
        if merged:
            stats.execution_count += 1
            rows = sum(r.rows for r in batch)
            b = stats.batches.get(rows)
            if b is None:
                b = stats.batches[rows] = BatchStats()
            b.count += 1
        for req, (result, exc) in zip(batch, singles, strict=True):
            if exc is not None:
                self._fail(req, as_serve_error(self.name, exc), now)
                continue
            if not req.future.done():
                req.future.set_result(result)
            lat = now - req.arrival
            stats.success_count += 1
            stats.success_ns += lat
            stats.latency_hist[bisect_left(LATENCY_BOUNDS_NS, lat)] += 1
            stats.inference_count += req.rows
            if merged:
                stats.infer_count += 1
                stats.infer_ns += infer_ns
            else:
                stats.execution_count += 1

    # ------------------------------------------------------------------ lifecycle
    async def drain(self) -> None:
        """Wait until every accepted request has been answered."""
        while self.busy:
            assert self._idle is not None
            # the event may still be set from before the last submit: an Event that is
            # already set returns without yielding, and this loop would spin forever
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        """Stop accepting, answer everything queued, then release the instances."""
        self._closed = True
        if self._loop is not None:
            await self.drain()
        self._pool.shutdown(wait=False)
