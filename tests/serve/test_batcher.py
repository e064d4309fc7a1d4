"""The dynamic batcher on its own (no network), with a recording backend."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from lightspeed.serve.batcher import BatchingPolicy, Scheduler
from lightspeed.serve.errors import ServeError


class Recorder:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, instance, inputs, outputs):
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.batches.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2 + instance}


def _scheduler(policy, rec, instances=(0,)):
    return Scheduler("m", list(instances), rec, policy, ["y"])


def _submit(s, value, rows=1, timeout_ns=0):
    return s.submit({"x": np.full((rows, 2), value, np.float64)}, rows, None, timeout_ns)


def test_merges_up_to_max_batch_and_splits_results():
    rec = Recorder(delay=0.05)

    async def run():
        s = _scheduler(BatchingPolicy(max_batch_size=4, dynamic=True), rec)
        futs = [_submit(s, i) for i in range(10)]
        out = await asyncio.gather(*futs)
        await s.close()
        return out

    out = asyncio.run(run())
    for i, r in enumerate(out):
        np.testing.assert_array_equal(r["y"], np.full((1, 2), 2 * i))
    assert sum(rec.batches) == 10 and max(rec.batches) <= 4
    assert rec.batches == [4, 4, 2]  # all queued in one tick -> full batches


def test_without_dynamic_batching_each_request_runs_alone():
    rec = Recorder()

    async def run():
        s = _scheduler(BatchingPolicy(max_batch_size=4, dynamic=False), rec)
        await asyncio.gather(*[_submit(s, i, rows=2) for i in range(5)])
        await s.close()

    asyncio.run(run())
    assert rec.batches == [2] * 5


def test_preferred_batch_size_is_cut_first():
    rec = Recorder(delay=0.02)

    async def run():
        policy = BatchingPolicy(
            max_batch_size=8, dynamic=True, preferred=(2,), max_queue_delay_ns=50_000_000
        )
        s = _scheduler(policy, rec)
        await asyncio.gather(*[_submit(s, i) for i in range(5)])
        await s.close()

    asyncio.run(run())
    # 5 waiting, max 8 not reached: the largest preferred size (2) is sent at once, twice,
    # then the last one waits out the queue delay alone
    assert rec.batches == [2, 2, 1]


def test_max_queue_delay_waits_for_more_requests():
    rec = Recorder()

    async def run():
        policy = BatchingPolicy(max_batch_size=8, dynamic=True, max_queue_delay_ns=100_000_000)
        s = _scheduler(policy, rec)
        first = _submit(s, 0)
        await asyncio.sleep(0.02)
        second = _submit(s, 1)
        t0 = time.monotonic()
        await asyncio.gather(first, second)
        await s.close()
        return time.monotonic() - t0

    asyncio.run(run())
    assert rec.batches == [2]  # the second request joined the first one's batch


def test_bounded_queue_rejects_with_resource_exhausted(caplog):
    rec = Recorder(delay=0.05)

    async def run():
        s = _scheduler(BatchingPolicy(max_batch_size=1, dynamic=True, max_queue_size=2), rec)
        a, b = _submit(s, 0), _submit(s, 1)
        for _ in range(3):
            with pytest.raises(ServeError) as info:
                _submit(s, 2)
        assert info.value.code == "RESOURCE_EXHAUSTED" and info.value.http_status == 503
        await asyncio.gather(a, b)
        assert s.stats.rejected_count == 3
        await s.close()

    with caplog.at_level("WARNING", logger="lightspeed.serve"):
        asyncio.run(run())
    # the first rejection is logged at once; later ones are summed into one line a second
    lines = [r.fields for r in caplog.records if r.getMessage() == "queue full"]
    assert len(lines) == 1 and lines[0]["rejected"] == 1
    assert lines[0]["status"] == "RESOURCE_EXHAUSTED"


def test_request_timeout_in_queue():
    rec = Recorder(delay=0.1)

    async def run():
        s = _scheduler(BatchingPolicy(max_batch_size=1, dynamic=True), rec)
        a = _submit(s, 0)
        await asyncio.sleep(0.01)
        b = _submit(s, 1, timeout_ns=20_000_000)
        res = await asyncio.gather(a, b, return_exceptions=True)
        await s.close()
        return res, s.stats

    (_a, b), stats = asyncio.run(run())
    assert isinstance(b, ServeError) and b.code == "DEADLINE_EXCEEDED"
    assert stats.fail_count == 1 and stats.success_count == 1


def test_cancelled_requests_are_skipped():
    rec = Recorder(delay=0.05)

    async def run():
        s = _scheduler(BatchingPolicy(max_batch_size=1, dynamic=True), rec)
        a, b, c = _submit(s, 0), _submit(s, 1), _submit(s, 2)
        await asyncio.sleep(0)
        b.cancel()
        await asyncio.gather(a, c)
        await s.close()

    asyncio.run(run())
    assert len(rec.batches) == 2


def test_preserve_ordering_with_parallel_instances():
    done_order: list[int] = []

    def execute(instance, inputs, outputs):
        v = int(inputs["x"][0, 0])
        time.sleep(0.08 if v == 0 else 0.0)  # the first batch is the slowest
        return {"y": inputs["x"]}

    async def run(preserve):
        policy = BatchingPolicy(max_batch_size=1, dynamic=True, preserve_ordering=preserve)
        s = Scheduler("m", [0, 1], execute, policy, ["y"])
        futs = [_submit(s, i) for i in range(4)]
        for i, f in enumerate(futs):
            f.add_done_callback(lambda _, i=i: done_order.append(i))
        await asyncio.gather(*futs)
        await s.close()

    asyncio.run(run(True))
    assert done_order == [0, 1, 2, 3]
    done_order.clear()
    asyncio.run(run(False))
    assert done_order[0] != 0  # without the option, fast batches overtake the slow one


def test_instances_run_in_parallel_off_the_loop():
    active = []
    peak = []
    lock = threading.Lock()

    def execute(instance, inputs, outputs):
        with lock:
            active.append(instance)
            peak.append(len(active))
        time.sleep(0.05)
        with lock:
            active.remove(instance)
        return {"y": inputs["x"]}

    async def run():
        s = Scheduler("m", [0, 1, 2], execute, BatchingPolicy(max_batch_size=1), ["y"])
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        t = asyncio.ensure_future(ticker())
        await asyncio.gather(*[_submit(s, i) for i in range(6)])
        t.cancel()
        await s.close()
        return ticks

    ticks = asyncio.run(run())
    assert max(peak) == 3
    assert ticks >= 10  # the loop kept running while the instances worked


def test_backend_error_fails_only_its_batch():
    def execute(instance, inputs, outputs):
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"]}

    async def run():
        s = Scheduler("m", [0], execute, BatchingPolicy(max_batch_size=1), ["y"])
        bad = _submit(s, -1)
        good = _submit(s, 1)
        res = await asyncio.gather(bad, good, return_exceptions=True)
        await s.close()
        return res

    bad, good = asyncio.run(run())
    assert isinstance(bad, ServeError) and bad.code == "INTERNAL" and "negative input" in str(bad)
    np.testing.assert_array_equal(good["y"], np.ones((1, 2)))


def test_close_drains_then_refuses():
    rec = Recorder(delay=0.02)

    async def run():
        s = _scheduler(BatchingPolicy(max_batch_size=2, dynamic=True), rec)
        futs = [_submit(s, i) for i in range(5)]
        await s.close()
        assert all(f.done() and not f.exception() for f in futs)
        with pytest.raises(ServeError) as info:
            _submit(s, 9)
        assert info.value.code == "UNAVAILABLE"

    asyncio.run(run())


@pytest.mark.parametrize("dynamic", [True, False])
def test_inline_execution_for_tiny_models_gives_same_results(dynamic):
    async def run(inline_ns):
        calls = []

        def execute(instance, inputs, outputs):
            calls.append(threading.current_thread().name)
            return {"y": inputs["x"] * 3}

        policy = BatchingPolicy(max_batch_size=4, dynamic=dynamic, inline_below_ns=inline_ns)
        s = Scheduler("m", [0], execute, policy, ["y"])
        out = []
        for i in range(6):
            out.append(await _submit(s, i))
        await s.close()
        return out, calls

    out_inline, calls_inline = asyncio.run(run(10**9))
    out_thread, calls_thread = asyncio.run(run(0))
    for a, b in zip(out_inline, out_thread, strict=True):
        np.testing.assert_array_equal(a["y"], b["y"])
    assert calls_inline[0].startswith("ls-m") and calls_inline[-1] == "MainThread"
    assert all(c.startswith("ls-m") for c in calls_thread)


@pytest.mark.timeout(20)
def test_close_after_an_idle_spell_waits_without_spinning():
    """Regression: the idle event, still set from before a new submit, made ``drain`` spin
    on the loop (an Event that is already set never yields) and the queued request
    could never run: a runtime model reload hung the whole server."""
    rec = Recorder()

    async def run():
        s = _scheduler(BatchingPolicy(max_batch_size=4, dynamic=True), rec)
        await _submit(s, 1)  # runs; the scheduler goes idle and sets its idle event
        fut = _submit(s, 2)  # queued for the next loop tick
        await s.close()  # in the same tick: the request is still queued
        return await fut

    np.testing.assert_array_equal(asyncio.run(run())["y"], np.full((1, 2), 4))


def test_one_bad_request_in_a_merged_batch_fails_alone(caplog):
    """A batch whose merged execution fails is retried request by request."""
    from lightspeed.errors import InputError

    seen: list[int] = []

    def execute(instance, inputs, outputs):
        seen.append(len(inputs["x"]))
        if np.isnan(inputs["x"]).any():
            raise InputError("input 'x' contains NaN or Inf")
        if (inputs["x"] < -50).any():
            raise RuntimeError("backend crashed")
        return {"y": inputs["x"] * 3}

    async def run():
        s = Scheduler("m", [0], execute, BatchingPolicy(max_batch_size=8, dynamic=True), ["y"])
        futs = [_submit(s, float(i)) for i in range(3)]
        futs.append(s.submit({"x": np.full((1, 2), np.nan)}, 1, None, request_id="bad-1"))
        futs.append(_submit(s, -99.0))
        futs += [_submit(s, float(i)) for i in range(3, 6)]
        res = await asyncio.gather(*futs, return_exceptions=True)
        await s.close()
        return s, res

    with caplog.at_level("WARNING", logger="lightspeed.serve"):
        s, res = asyncio.run(run())
    assert seen[0] == 8  # merged first, then one execution per request
    good = [r for i, r in enumerate(res) if i not in (3, 4)]
    for v, r in zip([0, 1, 2, 3, 4, 5], good, strict=True):
        np.testing.assert_array_equal(r["y"], np.full((1, 2), 3.0 * v))
    assert isinstance(res[3], ServeError) and res[3].code == "INVALID_ARGUMENT"
    assert "NaN" in res[3].message
    assert isinstance(res[4], ServeError) and res[4].code == "INTERNAL"
    assert s.stats.fail_reasons == {"INVALID_ARGUMENT": 1, "INTERNAL": 1}
    assert s.stats.success_count == 6 and s.stats.fail_count == 2
    logged = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert len(logged) == 2
    assert any(r.fields["request_id"] == "bad-1" for r in logged)


def test_requests_with_different_shapes_are_not_merged():
    """Variable-size inputs (particle counts): only requests whose shapes agree share a batch."""
    batches: list[tuple[int, int]] = []

    def execute(instance, inputs, outputs):
        x = inputs["x"]
        batches.append(x.shape[:2])
        return {"y": x.sum(axis=(1, 2))[:, None]}

    async def run():
        policy = BatchingPolicy(max_batch_size=8, dynamic=True)
        s = Scheduler("m", [0], execute, policy, ["y"])
        counts = [3, 5, 3, 7, 5, 3, 7, 7, 3]
        futs = [
            s.submit({"x": np.full((1, n, 4), float(i))}, 1, None) for i, n in enumerate(counts)
        ]
        res = await asyncio.gather(*futs)
        await s.close()
        return counts, res

    counts, res = asyncio.run(run())
    for i, (n, r) in enumerate(zip(counts, res, strict=True)):
        np.testing.assert_array_equal(r["y"], [[4.0 * n * i]])
    # one execution per distinct particle count, each with all requests of that count
    assert sorted(batches) == [(2, 5), (3, 7), (4, 3)]
