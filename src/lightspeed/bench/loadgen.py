"""MLPerf LoadGen scenarios over the jet data: ``lightspeed bench loadgen``.

MLCommons' own load generator (``mlcommons-loadgen``, module ``mlperf_loadgen``)
drives a System Under Test (SUT) that answers from one of two targets:

- ``inprocess:COMPILED_DIR``: the bit-exact emulator in this process (a worker
  thread batches whatever queries are waiting, like a server's dynamic batcher);
- ``grpc://HOST:PORT/MODEL``: a Triton-compatible server (``lightspeed serve``
  or NVIDIA Triton), one gRPC request per query (Offline: per ``max_batch``).

The Query Sample Library (QSL) holds jets from the shipped sample's test split
(or a user's jet file), preloaded in memory.

Accuracy mode ("99% of FP32"): LoadGen issues every QSL sample once and logs
each response in ``mlperf_log_accuracy.json``. We decode those responses,
take top-1 (argmax) accuracy against the true jet class, and compare with the
float reference model on exactly the same samples. The run passes when
``accuracy_fixed >= 0.99 * accuracy_float``.

Short runs: MLPerf's official minimum duration is 600 s; here
``min_duration_ms`` defaults to 2 s and ``min_query_count`` to a small number
so a run takes seconds. LoadGen still judges validity (duration, query count,
early stopping, Server latency bound) against these settings; the summary says
so (``official_duration: false``).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.bench._targets import InprocessTarget, TargetSpec, open_target, parse_target
from lightspeed.errors import ConfigError, InputError, require

SCENARIOS = {
    "singlestream": "SingleStream",
    "multistream": "MultiStream",
    "server": "Server",
    "offline": "Offline",
}
MODES = ("performance", "accuracy", "both")
ACCURACY_RATIO = 0.99  # MLPerf's "99% of FP32" quality target
# Default min_query_count per scenario: small, but enough for LoadGen's early-stopping
# estimate of the 90th/99th percentile to be met on a 2-core machine.
_MIN_QUERIES = {"singlestream": 256, "multistream": 662, "server": 1024, "offline": 1}


@dataclass
class LoadgenConfig:
    """Options of one LoadGen run (see ``lightspeed bench loadgen --help``)."""

    scenario: str = "offline"
    target: str = ""
    outdir: str | Path = "loadgen_results"
    mode: str = "both"  # performance | accuracy | both
    data: str | None = None  # jet file or .npy/.npz inputs; None: the shipped sample's test split
    labels: str | None = None  # .npy of integer labels for --data arrays (accuracy needs them)
    synthetic: bool = False  # N(0,1) inputs of the model's shape; accuracy not measured
    count: int = 0  # QSL size; 0: every jet in the data
    performance_sample_count: int = 2048
    min_duration_ms: int = 2000
    min_query_count: int | None = None  # None: per-scenario default above
    max_duration_ms: int = 60000
    target_qps: float | None = None  # server; None: half the measured single-request rate
    target_latency_ms: float = 10.0  # server latency bound (99th percentile)
    expected_qps: float | None = None  # offline; None: 2x the measured batch rate
    samples_per_query: int = 8  # multistream
    max_batch: int = 256  # offline: samples per request
    reference: str | None = None  # float model (.onnx); None: the compiled model's own float graph
    seed: int = 0
    timeout_s: float = 5.0  # fail fast when a gRPC server does not answer
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(
                f"scenario {self.scenario!r} is unknown; choose one of {', '.join(SCENARIOS)}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is unknown; choose one of {', '.join(MODES)}")
        checks = [
            (self.count >= 0, "--count must be >= 0 (0 = all jets)"),
            (self.performance_sample_count >= 1, "--performance-sample-count must be >= 1"),
            (self.min_duration_ms >= 100, "--min-duration-ms must be at least 100 ms"),
            (
                self.max_duration_ms >= self.min_duration_ms,
                "--max-duration-ms must be at least --min-duration-ms",
            ),
            (
                self.min_query_count is None or self.min_query_count >= 1,
                "--min-query-count must be >= 1",
            ),
            (
                self.target_qps is None or self.target_qps > 0,
                "--target-qps must be > 0 (queries per second the Server scenario issues)",
            ),
            (self.target_latency_ms > 0, "--target-latency-ms must be > 0"),
            (
                self.expected_qps is None or self.expected_qps > 0,
                "--expected-qps must be > 0 (Offline sizes its one query from it)",
            ),
            (self.samples_per_query >= 1, "--samples-per-query must be >= 1"),
            (self.max_batch >= 1, "--max-batch must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.target_qps is not None and self.scenario != "server":
            raise ConfigError("--target-qps applies to the server scenario only")
        if self.expected_qps is not None and self.scenario != "offline":
            raise ConfigError("--expected-qps applies to the offline scenario only")


# ------------------------------------------------------------------------------------------ data


@dataclass
class JetQSL:
    """The samples LoadGen may ask for: inputs (float32) and true labels when known."""

    features: np.ndarray
    labels: np.ndarray | None  # None: no labels, so accuracy is not measured
    class_names: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.features)


SYNTHETIC_SAMPLES = 4096


def _read_array(path: str, what: str) -> np.ndarray:
    """One array from a .npy file, or the only array of a .npz file."""
    from lightspeed.files import load_array_file

    if Path(path).suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
        if len(keys) != 1:
            raise InputError(f"{what} {path} holds arrays {keys}; give a file with one array")
        return np.asarray(load_array_file(path, keys, what)[keys[0]])
    return np.asarray(load_array_file(path, ["x"], what)["x"])


def _load_arrays(data: str, labels: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    x = _read_array(data, "--data")
    y = None if labels is None else _read_array(labels, "--labels")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise InputError(
            f"--labels {labels} has shape {list(y.shape)}; expected one integer label per "
            f"sample of --data ({len(x)})"
        )
    return x, y


def load_qsl_data(
    data: str | None,
    count: int,
    seed: int = 0,
    *,
    labels: str | None = None,
    synthetic: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> JetQSL:
    """Samples for the QSL: user arrays (``.npy``/``.npz``, optional labels), a jet file,
    synthetic N(0,1) inputs of the model's shape, or the shipped sample's 25% test split
    (seed 0, as the demo) when the model takes jet features."""
    from lightspeed.data import load_default_jets
    from lightspeed.data.io import load_jets

    rng = np.random.default_rng(seed)
    y: np.ndarray | None
    names: tuple[str, ...] = ()
    if labels and not data:
        raise InputError("--labels needs --data (the inputs the labels belong to)")
    if synthetic:
        if input_shape is None:
            raise InputError("--synthetic needs the model's input shape")
        n = count or SYNTHETIC_SAMPLES
        x = rng.standard_normal((n, *input_shape)).astype(np.float32)
        y, source = None, f"synthetic N(0,1) inputs of shape {list(input_shape)}"
    elif data and Path(data).suffix in (".npy", ".npz"):
        x, y = _load_arrays(data, labels)
        source = str(data)
    else:
        if data:
            jets = load_jets(data)
            source = str(data)
        else:
            _, jets = load_default_jets().split(test_fraction=0.25, seed=0)
            source = "shipped jet sample, test split (25%, seed 0)"
            if input_shape is not None and tuple(input_shape) != jets.features.shape[1:]:
                raise InputError(
                    f"the model takes inputs of shape {list(input_shape)}, not the shipped "
                    f"jets' {list(jets.features.shape[1:])}: give your data with --data X.npy "
                    "[--labels y.npy], or --synthetic for random inputs (performance only)"
                )
        x, y, names = jets.features, np.asarray(jets.labels), tuple(jets.class_names)
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(
            f"{source}: samples have shape {list(x.shape[1:])} but the model takes "
            f"{list(input_shape)} (without the batch axis)"
        )
    n = len(x) if count == 0 or synthetic else count
    if n > len(x):
        raise InputError(f"--count {count} exceeds the {len(x)} samples in {source}")
    idx = np.sort(rng.choice(len(x), n, replace=False)) if n < len(x) else np.arange(n)
    return JetQSL(
        np.ascontiguousarray(x[idx], dtype=np.float32),
        None if y is None else y[idx],
        names,
        source,
    )


# ------------------------------------------------------------------------------------------ SUT


class JetSUT:
    """LoadGen callbacks over a target; records SUT-side latencies per query.

    Responses reach LoadGen from one completer thread that lives exactly as long
    as the test (``start``/``stop``): LoadGen keeps a thread-local logger for every
    thread that calls ``QuerySamplesComplete``, and calling it from short-lived
    client threads (gRPC callbacks) crashed LoadGen's logger (a segfault in
    ``TlsLogger::SwapBuffers``, mlperf_loadgen 6.0.17).
    """

    def __init__(
        self, lg, target, qsl: JetQSL, scenario: str, max_batch: int, max_inflight: int = 8
    ) -> None:
        self.lg = lg
        self.target = target
        self.qsl = qsl
        # values per response (the model's output width), from one sample
        self.n_outputs = int(np.asarray(target.infer(qsl.features[:1])).reshape(1, -1).shape[1])
        self.scenario = scenario
        self.max_batch = max_batch
        self.latencies_ns: list[int] = []
        self.errors: list[str] = []
        self.completed = 0
        self._lock = threading.Lock()
        self._inflight = threading.BoundedSemaphore(max_inflight)
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._completer: threading.Thread | None = None

    def start(self) -> None:
        self._completer = threading.Thread(target=self._drain, name="loadgen-complete")
        self._completer.start()

    def stop(self) -> None:
        if self._completer is not None:
            self._done.put(None)
            self._completer.join()
            self._completer = None

    def _drain(self) -> None:
        while (item := self._done.get()) is not None:
            self._complete(*item)

    def issue_queries(self, query_samples) -> None:
        ids = [q.id for q in query_samples]
        idx = np.fromiter((q.index for q in query_samples), dtype=np.int64, count=len(ids))
        t0 = time.perf_counter_ns()
        if self.scenario == "singlestream" and isinstance(self.target, InprocessTarget):
            # One query at a time: answer inline, no thread hop.
            y = self.target.infer(self.qsl.features[idx])
            self._complete(ids, y, time.perf_counter_ns() - t0)
            return
        if self.scenario != "offline":
            self._submit(ids, self.qsl.features[idx], t0)
            return
        # Offline: one huge query; keep a bounded number of requests in flight, as a
        # batch client would, instead of flooding the target with thousands at once.
        for start in range(0, len(ids), self.max_batch):
            self._inflight.acquire()
            chunk = slice(start, start + self.max_batch)
            self._submit(ids[chunk], self.qsl.features[idx[chunk]], t0, self._inflight.release)

    def _submit(self, ids: list[int], x: np.ndarray, t0: int, release=None) -> None:
        pending = {"ids": ids}

        def done(y: np.ndarray | None, error: BaseException | None) -> None:
            if release is not None:
                release()
            if error is not None or y is None:
                with self._lock:
                    self.errors.append(str(error))
                y = np.full((len(pending["ids"]), self.n_outputs), np.nan)
            take = pending["ids"][: len(y)]
            pending["ids"] = pending["ids"][len(y) :]
            self._done.put((take, y, time.perf_counter_ns() - t0))

        self.target.infer_async(x, done)

    def _complete(self, ids: list[int], y: np.ndarray, lat: int) -> None:
        rows = np.ascontiguousarray(y, dtype=np.float64)
        nbytes = rows.itemsize * (rows.shape[1] if rows.ndim > 1 else 1)
        base = rows.ctypes.data
        responses = [
            self.lg.QuerySampleResponse(qid, base + i * nbytes, nbytes) for i, qid in enumerate(ids)
        ]
        # LoadGen copies the response bytes inside this call; `rows` stays alive until it returns.
        self.lg.QuerySamplesComplete(responses)
        with self._lock:
            self.latencies_ns.append(lat)
            self.completed += len(ids)

    def flush_queries(self) -> None:
        pass


# -------------------------------------------------------------------------------------- settings


def _probe(target, qsl: JetQSL, batch: int) -> dict[str, float]:
    """Quick rates used to size LoadGen's settings so the run is valid."""
    x1 = qsl.features[:1]
    for _ in range(5):
        target.infer(x1)
    # Medians: one scheduling stall on a busy machine must not set the rates.
    single = []
    for i in range(50):
        t = time.perf_counter()
        target.infer(qsl.features[i % len(qsl.features) : i % len(qsl.features) + 1])
        single.append(time.perf_counter() - t)
    single_s = float(np.median(single))
    xm = qsl.features[:8]
    multi = []
    for _ in range(20):
        t = time.perf_counter()
        target.infer(xm)
        multi.append(time.perf_counter() - t)
    multi_s = float(np.median(multi))
    xb = qsl.features[: min(batch, len(qsl.features))]
    target.infer(xb)
    reps = 5
    t = time.perf_counter()
    for _ in range(reps):
        target.infer(xb)
    batch_rate = reps * len(xb) / (time.perf_counter() - t)
    return {
        "single_latency_s": single_s,
        "multi8_latency_s": multi_s,
        "batch_rate_per_s": batch_rate,
    }


_OFFLINE_AUTO_CAP = 400_000.0  # samples/s; bounds the size of the one Offline query


def make_settings(
    lg, cfg: LoadgenConfig, probe: dict[str, float], accuracy: bool, auto: dict | None = None
):
    """LoadGen TestSettings for ``cfg``; ``auto`` overrides the automatically chosen rates."""
    auto = auto or {}
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, SCENARIOS[cfg.scenario])
    s.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    s.min_duration_ms = cfg.min_duration_ms
    s.max_duration_ms = cfg.max_duration_ms
    s.min_query_count = cfg.min_query_count or _MIN_QUERIES[cfg.scenario]
    s.qsl_rng_seed = s.sample_index_rng_seed = s.schedule_rng_seed = cfg.seed + 1
    single_ns = max(1, int(probe["single_latency_s"] * 1e9))
    resolved: dict[str, Any] = {"min_query_count": s.min_query_count}
    # LoadGen pre-generates min_duration / expected_latency queries: under-estimate the
    # latency (70% of an inference-only probe) so the run cannot end before min_duration.
    if cfg.scenario == "singlestream":
        s.single_stream_expected_latency_ns = int(0.7 * single_ns)
    elif cfg.scenario == "multistream":
        s.multi_stream_samples_per_query = cfg.samples_per_query
        per_query = probe["multi8_latency_s"] * max(1.0, cfg.samples_per_query / 8)
        s.multi_stream_expected_latency_ns = max(1, int(0.7e9 * per_query))
        resolved["samples_per_query"] = cfg.samples_per_query
    elif cfg.scenario == "server":
        qps = cfg.target_qps or auto.get("target_qps") or round(0.5 / probe["single_latency_s"], 1)
        if accuracy:
            # Latency is not judged in accuracy mode: issue at the one-at-a-time rate so every
            # jet is seen quickly without flooding the target (an overloaded server may drop
            # requests, which would count as wrong answers).
            qps = max(qps, round(1.0 / probe["single_latency_s"], 1))
        s.server_target_qps = qps
        s.server_target_latency_ns = int(cfg.target_latency_ms * 1e6)
        resolved.update(target_qps=qps, target_latency_ms=cfg.target_latency_ms)
    else:
        qps = (
            cfg.expected_qps
            or auto.get("expected_qps")
            or round(min(1.5 * probe["batch_rate_per_s"], _OFFLINE_AUTO_CAP), 1)
        )
        s.offline_expected_qps = qps
        resolved["expected_qps"] = qps
    return s, resolved


# ----------------------------------------------------------------------------------------- logs


def read_detail_log(path: Path) -> dict[str, Any]:
    """The ``:::MLLOG`` records of ``mlperf_log_detail.txt`` as key -> value (last one wins)."""
    out: dict[str, Any] = {}
    errors: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            rec = json.loads(line[len(":::MLLOG ") :])
        except json.JSONDecodeError:
            continue
        if rec.get("metadata", {}).get("is_error"):
            errors.append(str(rec.get("value")))
        out[rec["key"]] = rec.get("value")
    out["_errors"] = errors
    return out


def invalid_reason(detail: dict[str, Any], scenario: str) -> str:
    """Why LoadGen said INVALID, in words (empty when VALID)."""
    if detail.get("result_validity") == "VALID":
        return ""
    reasons = []
    if detail.get("result_min_duration_met") is False:
        reasons.append("minimum duration not met")
    if detail.get("result_min_queries_met") is False:
        reasons.append("minimum query count not met")
    if detail.get("early_stopping_met") is False:
        reasons.append("early-stopping percentile estimate not met (run more queries)")
    if detail.get("result_perf_constraints_met") is False:
        reasons.append(
            "latency bound exceeded (lower --target-qps or raise --target-latency-ms)"
            if scenario == "server"
            else "performance constraints not met"
        )
    extra = str(detail.get("result_invalid_reason") or "").strip()
    if extra:
        reasons.append(f"LoadGen: {extra}")
    return "; ".join(reasons) or "LoadGen marked the run INVALID"


def _perf_summary(detail: dict[str, Any], scenario: str) -> dict[str, Any]:
    pct = {
        k[len("result_") : -len("_percentile_latency_ns")]: v / 1e6
        for k, v in detail.items()
        if k.startswith("result_") and k.endswith("_percentile_latency_ns")
    }
    if scenario == "server":
        rate = detail.get("result_completed_samples_per_sec")
    elif scenario == "offline":
        rate = detail.get("result_samples_per_second")
    else:
        # SingleStream/MultiStream report latency; throughput = samples / mean latency.
        mean_ns = detail.get("result_mean_latency_ns") or 0
        spq = detail.get("effective_samples_per_query", 1) or 1
        rate = spq * 1e9 / mean_ns if mean_ns else None
    return {
        "validity": detail.get("result_validity", "UNKNOWN"),
        "invalid_reason": invalid_reason(detail, scenario),
        "samples_per_second": rate,
        "scheduled_samples_per_second": detail.get("result_scheduled_samples_per_sec"),
        "query_count": detail.get("result_query_count"),
        "latency_ms": {
            "min": (detail.get("result_min_latency_ns") or 0) / 1e6,
            "mean": (detail.get("result_mean_latency_ns") or 0) / 1e6,
            "max": (detail.get("result_max_latency_ns") or 0) / 1e6,
            **{f"p{k}": v for k, v in sorted(pct.items(), key=lambda kv: float(kv[0]))},
        },
        "early_stopping": detail.get("early_stopping_result") or "",
        "loadgen_errors": detail.get("_errors", []),
        "effective_min_duration_ms": detail.get("effective_min_duration_ms"),
        "effective_min_query_count": detail.get("effective_min_query_count"),
    }


def read_accuracy_log(path: Path, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """(qsl indices, outputs) decoded from ``mlperf_log_accuracy.json`` (float64 responses)."""
    entries = json.loads(path.read_text() or "[]")
    idx = np.array([e["qsl_idx"] for e in entries], dtype=np.int64)
    out = np.array(
        [np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float64) for e in entries]
    ).reshape(len(entries), -1)
    if len(entries) and out.shape[1] != n_outputs:
        raise InputError(f"{path}: responses hold {out.shape[1]} values, expected {n_outputs}")
    return idx, out


def accuracy_check(
    outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Top-1 accuracy of the target vs the float reference on the same samples."""
    acc_fixed = float(np.mean(outputs.argmax(1) == labels)) if len(labels) else 0.0
    acc_float = float(np.mean(reference.argmax(1) == labels)) if len(labels) else 0.0
    ratio = acc_fixed / acc_float if acc_float else 0.0
    return {
        "samples": len(labels),
        "accuracy_fixed": acc_fixed,
        "accuracy_float": acc_float,
        "ratio": ratio,
        "argmax_agreement": float(np.mean(outputs.argmax(1) == reference.argmax(1)))
        if len(labels)
        else 0.0,
        "threshold": ACCURACY_RATIO,
        "passed": bool(len(labels)) and acc_fixed >= ACCURACY_RATIO * acc_float,
        "definition": "top-1 accuracy of the target >= 0.99 x top-1 accuracy of the float "
        "reference model, on the same LoadGen accuracy-mode samples",
    }


def _reference_predict(cfg: LoadgenConfig, spec: TargetSpec, target, x: np.ndarray) -> np.ndarray:
    from lightspeed.emulate import as_input_dict, run_float
    from lightspeed.frontends import load_model
    from lightspeed.zoo import model_path

    if cfg.reference:
        graph = load_model(cfg.reference)
        out = run_float(graph, as_input_dict(graph, x))
        return np.asarray(next(iter(out.values())), dtype=np.float64)
    if spec.kind == "inprocess":
        return target.reference(x)
    graph = load_model(model_path("jet_tagger"))
    out = run_float(graph, as_input_dict(graph, x))
    return np.asarray(next(iter(out.values())), dtype=np.float64)


# ------------------------------------------------------------------------------------------- run


def _start_test(lg, sut: JetSUT, qsl: JetQSL, settings, outdir: Path, perf_count: int) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut_h = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
    qsl_h = lg.ConstructQSL(len(qsl), perf_count, lambda s: None, lambda s: None)
    sut.start()
    try:
        lg.StartTestWithLogSettings(sut_h, qsl_h, settings, log)
    finally:
        sut.stop()
        lg.DestroyQSL(qsl_h)
        lg.DestroySUT(sut_h)


def _quantiles_ms(lat_ns: list[int]) -> list[float]:
    if not lat_ns:
        return []
    return [float(v) / 1e6 for v in np.quantile(np.asarray(lat_ns), np.linspace(0, 1, 101))]


def run_loadgen(cfg: LoadgenConfig, progress=None) -> dict[str, Any]:
    """Run one scenario in performance and/or accuracy mode; write logs + ``summary.json``."""
    cfg.validate()
    lg = require("mlperf_loadgen", "bench", "MLPerf LoadGen scenarios")
    spec = parse_target(cfg.target)
    say = progress or (lambda msg: None)
    outdir = Path(cfg.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    target = open_target(spec, cfg.timeout_s)
    try:
        qsl = load_qsl_data(
            cfg.data,
            cfg.count,
            cfg.seed,
            labels=cfg.labels,
            synthetic=cfg.synthetic,
            input_shape=tuple(target.input_shape),
        )
    except BaseException:
        target.close()
        raise
    perf_count = min(cfg.performance_sample_count, len(qsl))
    summary: dict[str, Any] = {
        "kind": "loadgen",
        "scenario": cfg.scenario,
        "target": str(spec),
        "target_kind": spec.kind,
        "data": qsl.source,
        "qsl_samples": len(qsl),
        "performance_sample_count": perf_count,
        "loadgen_version": getattr(lg, "__version__", None) or _pkg_version("mlcommons-loadgen"),
        "official_duration": cfg.min_duration_ms >= 600_000,
        "note": "min_duration_ms/min_query_count shortened for quick runs; MLPerf submissions "
        "need 600 s. Latency CDF quantiles are measured SUT-side (issue -> complete).",
    }
    try:
        batch = min(cfg.max_batch, getattr(target, "max_batch", cfg.max_batch))
        probe = _probe(target, qsl, batch)
        summary["probe"] = probe
        if cfg.mode in ("performance", "both"):
            summary["performance"], resolved = _performance(lg, cfg, spec, target, qsl, probe, say)
            summary["settings"] = {**asdict(cfg), **resolved, "outdir": str(cfg.outdir)}
        if cfg.mode in ("accuracy", "both"):
            settings, _ = make_settings(lg, cfg, probe, accuracy=True)
            say(f"{cfg.scenario} accuracy run over {len(qsl)} samples")
            sut = JetSUT(lg, target, qsl, cfg.scenario, batch)
            _start_test(lg, sut, qsl, settings, outdir / "accuracy", perf_count)
            idx, outputs = read_accuracy_log(
                outdir / "accuracy" / "mlperf_log_accuracy.json", sut.n_outputs
            )
            ref = _reference_predict(cfg, spec, target, qsl.features[idx])
            if qsl.labels is None:
                acc = {
                    "samples": len(idx),
                    "measured": False,
                    "note": f"no labels ({qsl.source}): accuracy is not measured; "
                    "argmax agreement with the float reference is",
                    "argmax_agreement": float(np.mean(outputs.argmax(1) == ref.argmax(1)))
                    if len(idx)
                    else 0.0,
                }
            else:
                acc = accuracy_check(outputs, ref, qsl.labels[idx])
            acc["sut_error_count"] = len(sut.errors)
            if sut.errors:
                acc["passed"] = False
            summary["accuracy"] = acc
    finally:
        target.close()
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _performance(lg, cfg, spec, target, qsl, probe, say) -> tuple[dict[str, Any], dict]:
    """One performance run; if an automatically chosen rate made it INVALID, one retry.

    Offline: the achieved rate beat ``offline_expected_qps`` (the query ran out before
    min_duration) -> retry with 2.5x the achieved rate. Server: the latency bound or early
    stopping failed -> retry at half the rate. Rates the user set are never changed.
    """
    outdir = Path(cfg.outdir) / "performance"
    perf_count = min(cfg.performance_sample_count, len(qsl))
    batch = min(cfg.max_batch, getattr(target, "max_batch", cfg.max_batch))
    auto: dict[str, float] = {}
    retried = ""
    while True:
        settings, resolved = make_settings(lg, cfg, probe, accuracy=False, auto=auto)
        say(f"{cfg.scenario} performance run against {spec} ({resolved})")
        sut = JetSUT(lg, target, qsl, cfg.scenario, batch)
        t0 = time.perf_counter()
        _start_test(lg, sut, qsl, settings, outdir, perf_count)
        wall = time.perf_counter() - t0
        detail = read_detail_log(outdir / "mlperf_log_detail.txt")
        perf = _perf_summary(detail, cfg.scenario)
        if retried or perf["validity"] == "VALID" or sut.errors:
            break
        if cfg.scenario == "offline" and cfg.expected_qps is None and perf["samples_per_second"]:
            if detail.get("result_min_duration_met") is False:
                # A short first query under-reports the rate (start-up dominates): aim high.
                first = resolved["expected_qps"]
                auto["expected_qps"] = round(max(2.5 * perf["samples_per_second"], 2 * first), 1)
        elif cfg.scenario == "server" and cfg.target_qps is None:
            auto["target_qps"] = round(resolved["target_qps"] / 2, 1)
        if not auto:
            break
        retried = f"first run INVALID ({perf['invalid_reason']}); retried with {auto}"
        say(retried)
    perf["wall_seconds"] = wall
    perf["retried"] = retried
    perf["sut_errors"] = sut.errors[:5]
    perf["sut_error_count"] = len(sut.errors)
    if sut.errors:
        perf["validity"] = "INVALID"
        perf["invalid_reason"] = f"{len(sut.errors)} request(s) failed, first: {sut.errors[0]}"
    if cfg.scenario != "offline":
        perf["latency_quantiles_ms"] = _quantiles_ms(sut.latencies_ns)
    return perf, resolved


def _pkg_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------- tables


def summary_row(s: dict[str, Any]) -> dict[str, Any]:
    perf = s.get("performance", {})
    acc = s.get("accuracy", {})
    lat = perf.get("latency_ms", {})
    return {
        "scenario": s["scenario"],
        "target": s["target_kind"],
        "samples/s": perf.get("samples_per_second"),
        "p50 ms": lat.get("p50.00"),
        "p90 ms": lat.get("p90.00"),
        "p99 ms": lat.get("p99.00"),
        "validity": perf.get("validity", "-"),
        "reason": perf.get("invalid_reason", ""),
        "acc target": acc.get("accuracy_fixed"),
        "acc float ref": acc.get("accuracy_float"),
        "99% of FP32": ("pass" if acc.get("passed") else "FAIL")
        if acc and acc.get("measured", True)
        else "not measured"
        if acc
        else "-",
    }


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    rows = [summary_row(s) for s in summaries]
    if not rows:
        return ""
    cols = list(rows[0])

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, int | float) and not isinstance(v, bool):
            return f"{v:,.0f}" if v >= 100 else f"{v:.3f}" if v < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
