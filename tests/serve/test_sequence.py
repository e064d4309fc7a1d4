"""Sequence batching: stateful models see each sequence's requests in order, with
Triton's control tensors and implicit state, through a real server and tritonclient."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from lightspeed.serve.errors import ServeError
from lightspeed.serve.repository import parse_config_text, validate_config
from lightspeed.serve.server import BackgroundServer, ServerConfig


class Accumulator:
    """y = state + x; records each batch's READY/CORRID/START rows."""

    def __init__(self) -> None:
        self.batches: list[tuple] = []
        self.lock = threading.Lock()

    def __call__(self, d):
        with self.lock:
            self.batches.append(
                (d["READY"][:, 0].tolist(), d["CORRID"][:, 0].tolist(), d["START"][:, 0].tolist())
            )
        acc = d["acc_in"] + d["x"] * d["READY"]
        return {"y": acc.astype(np.float32), "acc_out": acc.astype(np.float32)}


def _sequence_config(strategy: str, idle_us: int = 5_000_000) -> dict:
    strat = (
        {"direct": {}}
        if strategy == "direct"
        else {"oldest": {"max_candidate_sequences": 4, "max_queue_delay_microseconds": 2000}}
    )
    flag = {"int32_false_true": [0, 1]}
    return {
        "sequence_batching": {
            "max_sequence_idle_microseconds": idle_us,
            "control_input": [
                {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START", **flag}]},
                {"name": "READY", "control": [{"kind": "CONTROL_SEQUENCE_READY", **flag}]},
                {
                    "name": "CORRID",
                    "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_INT64"}],
                },
            ],
            "state": [
                {
                    "input_name": "acc_in",
                    "output_name": "acc_out",
                    "data_type": "TYPE_FP32",
                    "dims": [1],
                    "initial_state": [
                        {"name": "z", "data_type": "TYPE_FP32", "dims": [1], "zero_data": True}
                    ],
                },
            ],
            **strat,
        }
    }


@pytest.fixture(scope="module", params=["direct", "oldest"])
def served(request):
    fn = Accumulator()

    def setup(core):
        core.add_python_model(
            "acc",
            fn,
            [("x", "FP32", [1])],
            [("y", "FP32", [1])],
            max_batch_size=4,
            extra=_sequence_config(request.param),
        )
        core.add_python_model(
            "quick",
            Accumulator(),
            [("x", "FP32", [1])],
            [("y", "FP32", [1])],
            max_batch_size=2,
            extra=_sequence_config("direct", idle_us=50_000),
        )

    cfg = ServerConfig(repository=None, grpc_port=0, http_port=-1, metrics_port=-1)
    with BackgroundServer(cfg, setup=setup) as srv:
        yield srv, fn, request.param


def _send(c, model, value, seq, start=False, end=False):
    i = grpcclient.InferInput("x", [1, 1], "FP32")
    i.set_data_from_numpy(np.array([[value]], np.float32))
    r = c.infer(model, [i], sequence_id=seq, sequence_start=start, sequence_end=end)
    return float(r.as_numpy("y")[0, 0])


def test_interleaved_sequences_keep_their_own_state_and_order(served):
    srv, fn, strategy = served
    fn.batches.clear()
    values = {seq: list(range(1, 9)) for seq in (11, 22, 33, 44, 55)}  # 5 sequences > 4 slots
    got: dict[int, list[float]] = {}

    def client(seq):
        c = grpcclient.InferenceServerClient(srv.grpc_url)
        xs = values[seq]
        got[seq] = [
            _send(c, "acc", v * seq, seq, start=k == 0, end=k == len(xs) - 1)
            for k, v in enumerate(xs)
        ]
        c.close()

    threads = [threading.Thread(target=client, args=(s,)) for s in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for seq, xs in values.items():
        np.testing.assert_allclose(got[seq], np.cumsum(xs) * seq)  # running sums, in order
    for ready, corrids, _ in fn.batches:
        live = [c for r, c in zip(ready, corrids, strict=True) if r]
        assert len(live) == len(set(live))  # never two requests of one sequence in a batch
    if strategy == "direct":
        rows = {}
        for ready, corrids, _ in fn.batches:
            for row, (r, c) in enumerate(zip(ready, corrids, strict=True)):
                if r:
                    assert rows.setdefault(c, row) == row  # a sequence keeps its slot
    assert max(len(b[0]) for b in fn.batches) <= 4


def test_requests_outside_a_running_sequence_are_refused(served):
    srv, _, _ = served
    c = grpcclient.InferenceServerClient(srv.grpc_url)
    with pytest.raises(InferenceServerException, match="not running"):
        _send(c, "acc", 1.0, 999)
    assert _send(c, "acc", 2.0, 7, start=True) == 2.0
    assert _send(c, "acc", 3.0, 7, end=True) == 5.0
    with pytest.raises(InferenceServerException, match="not running"):
        _send(c, "acc", 1.0, 7)  # it ended
    assert _send(c, "acc", 4.0, 7, start=True) == 4.0  # a fresh start, fresh state
    with pytest.raises(InferenceServerException, match="non-zero sequence_id"):
        i = grpcclient.InferInput("x", [1, 1], "FP32")
        i.set_data_from_numpy(np.ones((1, 1), np.float32))
        c.infer("acc", [i])
    assert _send(c, "quick", 1.0, 5, start=True) == 1.0
    time.sleep(0.3)  # longer than quick's max_sequence_idle_microseconds
    with pytest.raises(InferenceServerException, match="idle longer"):
        _send(c, "quick", 1.0, 5)
    c.close()


def test_bad_sequence_configs_fail_the_load():
    base = 'name: "m"\nbackend: "python"\nmax_batch_size: 2\n'
    for snippet, match in (
        (
            'sequence_batching { control_input [{ name: "S" control [{ kind: '
            "CONTROL_SEQUENCE_START }] }] }",
            "int32_false_true",
        ),
        ("sequence_batching { }\ndynamic_batching { }", "oneof"),
        (
            'sequence_batching { state [{ input_name: "a" output_name: "b" '
            'data_type: TYPE_FP32 dims: [1] initial_state [{ name: "i" data_type: TYPE_FP32 '
            'dims: [1] data_file: "f" }] }] }',
            "data_file",
        ),
    ):
        with pytest.raises(ServeError, match=match):
            validate_config(parse_config_text(base + snippet, "c"), "m")
