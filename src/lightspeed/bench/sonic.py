"""SONIC capacity study: how many CPU jobs can one inference server serve? (``lightspeed bench sonic``)

N client processes (N = 1, 2, 4, ...) each emulate an event-processing job:
per event, some CPU work of configurable duration plus one inference request
(sync: work then wait for the answer; async: send, work, then wait) against
one server. The same jobs run again with the inference done locally in each
process (the all-local baseline). We measure event throughput and time per
event versus N and fit the SONIC model (Krupa et al., "GPU coprocessors as a
service for deep learning inference in high energy physics", 2021):

    t(N) = (1-p)*t_CPU + t_GPU*[1 + max(0, N/N_GPU - t_ideal/t_GPU)] + t_latency

- t_CPU: time per event when everything runs locally (CPU work + local inference);
- p: the fraction of t_CPU that is inference (offloaded to the server);
- t_GPU: server time per request (its inverse is the server's capacity);
- t_latency: what remote inference adds per event (network, serialization, queues);
- N_GPU: server instances (one here);
- t_ideal: the unsaturated time per event, (1-p)*t_CPU + t_GPU + t_latency (our
  definition: with it the saturated branch is exactly t = N*t_GPU/N_GPU, i.e. the
  throughput plateaus at N_GPU/t_GPU).

t_CPU and p come from the local baseline at N=1; t_GPU and t_latency are fitted
(scipy ``curve_fit``) to the measured t(N). The saturation point
N_sat = N_GPU*t_ideal/t_GPU is "one server sustains N_sat clients".

CPU work: ``spin`` burns the client's CPU (a real job); ``sleep`` waits instead, which
emulates clients on their own cores when the machine has fewer cores than clients
(on a 2-core box, N spinning clients would measure the box, not the server).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import ConfigError, require

WORK_MODES = ("sleep", "spin")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REQUEST_MODES = ("sync", "async")
CLIENTS = ("tritonclient", "sonic")


@dataclass
class SonicConfig:
    """Options of one capacity study (see ``lightspeed bench sonic --help``)."""

    model: str | None = None  # compiled dir or .onnx: served by a fresh `lightspeed serve`
    target: str | None = None  # grpc://HOST:PORT/MODEL of a running server instead
    local_model: str | None = None  # model for the all-local baseline (default: `model`)
    clients: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    cpu_ms: float = 2.0  # CPU work per event
    work: str = "sleep"
    mode: str = "sync"
    client: str = "tritonclient"  # tritonclient (blocking gRPC) | sonic (lightspeed.client)
    batch: int = 1  # jets per inference request (one request per event)
    duration_s: float = 3.0
    warmup_s: float = 0.5
    local: bool = True
    server_instances: int = 1
    outdir: str | Path = "sonic_results"
    timeout_s: float = 5.0
    seed: int = 0

    def validate(self) -> None:
        if (self.model is None) == (self.target is None):
            raise ConfigError(
                "give exactly one of --model (compiled dir or .onnx to serve) or "
                "--target grpc://HOST:PORT/MODEL (a running server)"
            )
        if not self.clients or any(n < 1 for n in self.clients):
            raise ConfigError("--clients must be positive integers, e.g. 1,2,4,8")
        if max(self.clients) > 256:
            raise ConfigError("--clients above 256 processes is not supported on one machine")
        if self.cpu_ms < 0:
            raise ConfigError("--cpu-ms must be >= 0")
        if self.work not in WORK_MODES:
            raise ConfigError(f"--work must be one of {', '.join(WORK_MODES)}")
        if self.mode not in REQUEST_MODES:
            raise ConfigError(f"--mode must be one of {', '.join(REQUEST_MODES)}")
        if self.client not in CLIENTS:
            raise ConfigError(f"--client must be one of {', '.join(CLIENTS)}")
        if self.batch < 1:
            raise ConfigError("--batch must be >= 1 (jets per request)")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise ConfigError("--duration must be > 0 and --warmup >= 0 seconds")
        if self.server_instances < 1:
            raise ConfigError("--server-instances must be >= 1")
        if self.local and self.target is not None and self.local_model is None:
            raise ConfigError(
                "the all-local baseline needs the model file: pass --local-model "
                "(compiled dir or .onnx) with --target, or --no-local"
            )


# ------------------------------------------------------------------------------------ the model


def sonic_time(
    n: np.ndarray,
    t_cpu: float,
    p: float,
    t_gpu: float,
    t_latency: float,
    n_gpu: int = 1,
) -> np.ndarray:
    """SONIC model: time per event with ``n`` clients sharing ``n_gpu`` servers."""
    n = np.asarray(n, dtype=float)
    t_ideal = (1 - p) * t_cpu + t_gpu + t_latency
    queue = np.maximum(0.0, n / n_gpu - t_ideal / t_gpu) if t_gpu > 0 else 0.0 * n
    return (1 - p) * t_cpu + t_gpu * (1 + queue) + t_latency


def fit_sonic(
    n: np.ndarray, t_event: np.ndarray, t_cpu: float, p: float, n_gpu: int = 1
) -> dict[str, Any]:
    """Least-squares fit of t_GPU and t_latency (t_CPU and p fixed from the local run)."""
    from scipy.optimize import curve_fit

    n = np.asarray(n, dtype=float)
    t_event = np.asarray(t_event, dtype=float)
    base = (1 - p) * t_cpu

    def model(nn, t_gpu, t_lat):
        return sonic_time(nn, t_cpu, p, t_gpu, t_lat, n_gpu)

    # Start: capacity from the largest N, latency from N=1.
    i_max = int(np.argmax(n))
    g0 = max(t_event[i_max] * n_gpu / n[i_max], 1e-7)
    l0 = max(t_event[int(np.argmin(n))] - base - g0, 0.0)
    try:
        popt, pcov = curve_fit(
            model, n, t_event, p0=[g0, l0], bounds=([1e-9, 0.0], [10.0, 10.0]), maxfev=20000
        )
        perr = np.sqrt(np.clip(np.diag(pcov), 0, None))
    except (RuntimeError, ValueError):
        popt, perr = np.array([g0, l0]), np.array([np.nan, np.nan])
    t_gpu, t_lat = (float(v) for v in popt)
    t_ideal = base + t_gpu + t_lat
    resid = t_event - model(n, *popt)
    return {
        "t_cpu_s": t_cpu,
        "p": p,
        "t_gpu_s": t_gpu,
        "t_gpu_err_s": float(perr[0]),
        "t_latency_s": t_lat,
        "t_latency_err_s": float(perr[1]),
        "t_ideal_s": t_ideal,
        "n_gpu": n_gpu,
        "n_saturation": n_gpu * t_ideal / t_gpu,
        "server_capacity_per_s": n_gpu / t_gpu,
        "rms_residual_s": float(np.sqrt(np.mean(resid**2))) if len(resid) else 0.0,
    }


# ------------------------------------------------------------------------------------- clients


@dataclass
class _ClientArgs:
    index: int
    remote: str | None  # grpc://... or None for local inference
    local_model: str | None
    features: np.ndarray
    cpu_ms: float
    work: str
    mode: str
    client: str
    batch: int
    duration_s: float
    warmup_s: float
    timeout_s: float


def _cpu_work(ms: float, work: str) -> None:
    if ms <= 0:
        return
    if work == "sleep":
        time.sleep(ms / 1000)
        return
    end = time.perf_counter() + ms / 1000
    x = 0
    while time.perf_counter() < end:  # burn the core like a reconstruction step would
        x += 1


def _local_engine(path: str):
    """Blocking ``infer(x)`` for a compiled dir (emulator) or an .onnx (onnxruntime, 1 thread)."""
    p = Path(path)
    if p.suffix == ".onnx":
        ort = require("onnxruntime", "serve", "local ONNX inference")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]
    from lightspeed.quantize import load_compiled

    q = load_compiled(p)
    return q.predict


def _client_main(args: _ClientArgs, barrier, results) -> None:
    try:
        results.put(_client_loop(args, barrier))
    except BaseException as exc:  # report, never hang the parent
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put({"index": args.index, "error": f"{type(exc).__name__}: {exc}"})


def _client_loop(args: _ClientArgs, barrier) -> dict[str, Any]:
    import threading

    if args.remote is not None and args.client == "sonic":
        import asyncio

        return asyncio.run(_sonic_client_loop(args, barrier))

    feats = args.features
    n = len(feats)
    infer_async: Callable[[np.ndarray], tuple[Any, dict[str, Any]]] | None = None
    if args.remote is not None:
        from lightspeed.bench._targets import GrpcTarget, parse_target

        target = GrpcTarget(parse_target(args.remote), args.timeout_s)
        infer = target.infer

        def _send(x):
            box: dict[str, Any] = {}
            ev = threading.Event()

            def done(y, err):
                box["y"], box["err"] = y, err
                ev.set()

            target.infer_async(x, done)
            return ev, box

        infer_async = _send
    else:
        assert args.local_model is not None
        infer = _local_engine(args.local_model)
    for i in range(5):  # warm connections and caches
        infer(feats[i % n : i % n + args.batch] if args.batch <= n else feats)
    barrier.wait()
    t_begin = time.perf_counter()
    t_measure = t_begin + args.warmup_s
    t_end = t_measure + args.duration_s
    lat, infer_t, work_t = [], [], []
    i = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= t_end:
            break
        start = (i * args.batch) % max(1, n - args.batch + 1)
        x = feats[start : start + args.batch]
        if args.mode == "async" and infer_async is not None:
            ev, box = infer_async(x)
            tw = time.perf_counter()
            _cpu_work(args.cpu_ms, args.work)
            tw = time.perf_counter() - tw
            ev.wait(60)
            if box.get("err") is not None:
                raise box["err"]
            ti = time.perf_counter() - t0 - tw
        else:
            tw = time.perf_counter()
            _cpu_work(args.cpu_ms, args.work)
            t1 = time.perf_counter()
            tw = t1 - tw
            infer(x)
            ti = time.perf_counter() - t1
        t2 = time.perf_counter()
        if t0 >= t_measure:
            lat.append(t2 - t0)
            infer_t.append(ti)
            work_t.append(tw)
        i += 1
    return _client_result(args, lat, infer_t, work_t, time.perf_counter() - t_measure)


def _client_result(args: _ClientArgs, lat, infer_t, work_t, elapsed: float) -> dict[str, Any]:
    return {
        "index": args.index,
        "events": len(lat),
        "elapsed_s": elapsed,
        "event_s": lat,
        "infer_s": infer_t,
        "work_s": work_t,
    }


async def _sonic_client_loop(args: _ClientArgs, barrier) -> dict[str, Any]:
    """The same event loop through ``lightspeed.client.SonicClient`` (asyncio)."""
    import asyncio

    from lightspeed.bench._targets import parse_target
    from lightspeed.client import SonicClient

    assert args.remote is not None
    spec = parse_target(args.remote)
    feats, n = args.features, len(args.features)
    async with SonicClient(f"{spec.host}:{spec.port}", spec.model, timeout_s=30.0) as client:
        for i in range(5):
            await client.infer_event(feats[i : i + args.batch])
        barrier.wait()  # blocks this loop on purpose: nothing else runs yet
        t_measure = time.perf_counter() + args.warmup_s
        t_end = t_measure + args.duration_s
        lat, infer_t, work_t = [], [], []
        i = 0
        while (t0 := time.perf_counter()) < t_end:
            start = (i * args.batch) % max(1, n - args.batch + 1)
            x = feats[start : start + args.batch]
            if args.mode == "async":
                task = asyncio.ensure_future(client.infer_event(x))
                await asyncio.sleep(0)  # let the request leave before the work blocks the loop
                tw = time.perf_counter()
                _cpu_work(args.cpu_ms, args.work)
                tw = time.perf_counter() - tw
                await task
                ti = time.perf_counter() - t0 - tw
            else:
                tw = time.perf_counter()
                _cpu_work(args.cpu_ms, args.work)
                t1 = time.perf_counter()
                tw = t1 - tw
                await client.infer_event(x)
                ti = time.perf_counter() - t1
            if t0 >= t_measure:
                lat.append(time.perf_counter() - t0)
                infer_t.append(ti)
                work_t.append(tw)
            i += 1
        return _client_result(args, lat, infer_t, work_t, time.perf_counter() - t_measure)


def run_clients(n: int, base: _ClientArgs, features: np.ndarray) -> dict[str, Any]:
    """Run ``n`` client processes at once; aggregate throughput and times per event."""
    ctx = mp.get_context("spawn")  # no fork: gRPC and threads do not survive fork
    barrier = ctx.Barrier(n + 1)
    results = ctx.Queue()
    procs = []
    # One compute thread per client, like a batch job pinned to its core: without this every
    # client's BLAS starts a thread per core and N clients thrash the machine.
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update(dict.fromkeys(_THREAD_VARS, "1"))
    try:
        for i in range(n):
            args = _ClientArgs(**{**asdict(base), "index": i, "features": features})
            proc = ctx.Process(target=_client_main, args=(args, barrier, results), daemon=True)
            proc.start()
            procs.append(proc)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out: list[dict[str, Any]] = []
    try:
        barrier.wait(timeout=60 + 2 * n)
        deadline = time.monotonic() + base.warmup_s + base.duration_s + 60
        while len(out) < n:
            out.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
    except Exception as exc:
        errors = []
        while not results.empty():
            item = results.get_nowait()
            if "error" in item:
                errors.append(item["error"])
        detail = errors[0] if errors else f"{type(exc).__name__} {exc}".strip()
        raise ConfigError(f"capacity study with {n} client(s) failed: {detail}") from None
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    errors = [r["error"] for r in out if "error" in r]
    if errors:
        raise ConfigError(f"capacity study with {n} client(s) failed: {errors[0]}")
    events = np.concatenate([np.asarray(r["event_s"]) for r in out]) if out else np.array([])
    infer = np.concatenate([np.asarray(r["infer_s"]) for r in out])
    work = np.concatenate([np.asarray(r["work_s"]) for r in out])
    throughput = float(sum(r["events"] / r["elapsed_s"] for r in out))
    return {
        "clients": n,
        "events": int(sum(r["events"] for r in out)),
        "throughput_events_per_s": throughput,
        "jets_per_s": throughput * base.batch,
        "event_time_mean_s": float(events.mean()) if events.size else float("nan"),
        "event_time_p50_s": float(np.median(events)) if events.size else float("nan"),
        "event_time_p99_s": float(np.quantile(events, 0.99)) if events.size else float("nan"),
        "infer_time_mean_s": float(infer.mean()) if infer.size else float("nan"),
        "work_time_mean_s": float(work.mean()) if work.size else float("nan"),
    }


# ----------------------------------------------------------------------------------------- study


def _features(batch: int, seed: int) -> np.ndarray:
    from lightspeed.data import load_default_jets

    jets = load_default_jets()
    rng = np.random.default_rng(seed)
    n = min(len(jets), max(1024, 4 * batch))
    return np.ascontiguousarray(jets.features[rng.choice(len(jets), n, replace=False)])


def _serve_model(model: str, workdir: Path, instances: int):
    """A temporary repository with ``model`` and a ``lightspeed serve`` process over it."""
    from lightspeed.bench._targets import ServerProcess
    from lightspeed.serve.repo_add import EntryOptions, add_model

    repo = workdir / "repo"
    add_model(model, repo, "sonic_model", EntryOptions(instances=instances))
    return ServerProcess(repo, log_file=workdir / "server.log")


def run_sonic(cfg: SonicConfig, progress=None) -> dict[str, Any]:
    """The whole study: remote runs for each N, the local baseline, the fit, plots, JSON."""
    cfg.validate()
    require("scipy", "bench", "the SONIC model fit")
    say = progress or (lambda msg: None)
    outdir = Path(cfg.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    features = _features(cfg.batch, cfg.seed)
    local_model = cfg.local_model or cfg.model
    base = _ClientArgs(
        index=0,
        remote=None,
        local_model=local_model,
        features=features[:0],
        cpu_ms=cfg.cpu_ms,
        work=cfg.work,
        mode=cfg.mode,
        client=cfg.client,
        batch=cfg.batch,
        duration_s=cfg.duration_s,
        warmup_s=cfg.warmup_s,
        timeout_s=cfg.timeout_s,
    )
    clients = sorted(set(cfg.clients))
    remote_rows, local_rows = [], []
    with tempfile.TemporaryDirectory(prefix="lightspeed-sonic-") as tmp:
        server = None
        if cfg.model is not None:
            server = _serve_model(cfg.model, Path(tmp), cfg.server_instances)
            server.start()
            target = server.target("sonic_model")
        else:
            assert cfg.target is not None
            from lightspeed.bench._targets import open_target

            open_target(cfg.target, cfg.timeout_s).close()  # fail fast with the address
            target = cfg.target
        try:
            for n in clients:
                say(
                    f"remote: {n} client(s), {cfg.mode} requests via {cfg.client}, "
                    f"{cfg.cpu_ms:g} ms {cfg.work}"
                )
                row = run_clients(n, _replace(base, remote=target), features)
                remote_rows.append(row)
                say(_row_text(row))
        finally:
            if server is not None:
                server.stop()
    if cfg.local:
        for n in clients:
            say(f"all-local: {n} client(s)")
            row = run_clients(n, _replace(base, remote=None, mode="sync"), features)
            local_rows.append(row)
            say(_row_text(row))
    result = analyse(cfg, remote_rows, local_rows)
    result["plots"] = [str(p.name) for p in plot_sonic(result, outdir)]
    (outdir / "sonic.json").write_text(json.dumps(result, indent=1, default=_json_default))
    return result


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _replace(base: _ClientArgs, **kw) -> _ClientArgs:
    return _ClientArgs(**{**asdict(base), "features": base.features, **kw})


def _row_text(row: dict[str, Any]) -> str:
    return (
        f"  N={row['clients']}: {row['throughput_events_per_s']:,.0f} events/s, "
        f"{row['event_time_mean_s'] * 1e3:.2f} ms/event "
        f"(inference {row['infer_time_mean_s'] * 1e3:.2f} ms)"
    )


def analyse(
    cfg: SonicConfig, remote: list[dict[str, Any]], local: list[dict[str, Any]]
) -> dict[str, Any]:
    """Fit the SONIC model and derive saturation and speed-up."""
    n = np.array([r["clients"] for r in remote], dtype=float)
    t = np.array([r["event_time_mean_s"] for r in remote])
    if local:
        l1 = min(local, key=lambda r: r["clients"])
        t_cpu = l1["event_time_mean_s"]
        p = float(np.clip(l1["infer_time_mean_s"] / t_cpu, 0.0, 1.0)) if t_cpu else 0.0
    else:
        # No local baseline: all of the client's own time is non-inference work.
        t_cpu = float(np.mean([r["work_time_mean_s"] for r in remote]))
        p = 0.0
    fit = fit_sonic(n, t, t_cpu, p, cfg.server_instances)
    speedup = {}
    by_n_local = {r["clients"]: r for r in local}
    for r in remote:
        lr = by_n_local.get(r["clients"])
        if lr and lr["throughput_events_per_s"]:
            speedup[str(r["clients"])] = (
                r["throughput_events_per_s"] / lr["throughput_events_per_s"]
            )
    best = max(remote, key=lambda r: r["throughput_events_per_s"])
    return {
        "kind": "sonic",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "remote": remote,
        "local": local,
        "fit": fit,
        "speedup_vs_local": speedup,
        "max_throughput": {
            "clients": best["clients"],
            "events_per_s": best["throughput_events_per_s"],
        },
        "sustains_clients": int(np.floor(fit["n_saturation"])),
        "definitions": {
            "t_ideal": "(1-p)*t_CPU + t_GPU + t_latency",
            "speedup": "remote event throughput / all-local event throughput at the same N",
            "saturation": "N_sat = N_GPU * t_ideal / t_GPU: more clients only queue",
        },
    }


# ----------------------------------------------------------------------------------------- plots


def plot_sonic(result: dict[str, Any], outdir: Path) -> list[Path]:
    """Throughput and time per event versus N, with the fitted model; PNGs in ``outdir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fit = result["fit"]
    remote, local = result["remote"], result["local"]
    n = np.array([r["clients"] for r in remote], dtype=float)
    grid = np.geomspace(1, max(n.max(), fit["n_saturation"] * 1.3, 2), 200)
    model_t = sonic_time(
        grid, fit["t_cpu_s"], fit["p"], fit["t_gpu_s"], fit["t_latency_s"], fit["n_gpu"]
    )
    cfg = result["config"]
    title = f"{cfg['cpu_ms']:g} ms {cfg['work']} CPU work/event, {cfg['mode']} requests, batch {cfg['batch']}"
    paths = []

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(
        n, [r["throughput_events_per_s"] for r in remote], "o-", label="as a service (measured)"
    )
    if local:
        ax.plot(
            [r["clients"] for r in local],
            [r["throughput_events_per_s"] for r in local],
            "s--",
            label="all-local inference (measured)",
        )
    ax.plot(grid, grid / model_t, "-", color="gray", alpha=0.8, label="SONIC model fit")
    ax.axvline(
        fit["n_saturation"], color="red", ls=":", label=f"saturation N={fit['n_saturation']:.1f}"
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent client processes N")
    ax.set_ylabel("events / s (all clients)")
    ax.set_title(title, fontsize=9)
    paths.append(_finish(fig, ax, outdir / "sonic_throughput.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(n, [r["event_time_mean_s"] * 1e3 for r in remote], "o", label="as a service: mean")
    ax.plot(
        n, [r["event_time_p99_s"] * 1e3 for r in remote], "v", alpha=0.6, label="as a service: p99"
    )
    if local:
        ax.plot(
            [r["clients"] for r in local],
            [r["event_time_mean_s"] * 1e3 for r in local],
            "s",
            label="all-local: mean",
        )
    ax.plot(grid, model_t * 1e3, "-", color="gray", label="SONIC model fit")
    ax.axvline(fit["n_saturation"], color="red", ls=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent client processes N")
    ax.set_ylabel("time per event (ms)")
    ax.set_title(
        f"t_GPU={fit['t_gpu_s'] * 1e3:.3f} ms, t_latency={fit['t_latency_s'] * 1e3:.3f} ms, "
        f"p={fit['p']:.2f}, t_CPU={fit['t_cpu_s'] * 1e3:.2f} ms",
        fontsize=9,
    )
    paths.append(_finish(fig, ax, outdir / "sonic_latency.png"))
    return paths


def _finish(fig, ax, path: Path) -> Path:
    """Grid, legend, layout; save the figure as PNG and free it."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown_table(result: dict[str, Any]) -> str:
    local = {r["clients"]: r for r in result["local"]}
    lines = [
        "| N clients | remote events/s | remote ms/event | inference ms | local events/s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["remote"]:
        lr = local.get(r["clients"])
        sp = result["speedup_vs_local"].get(str(r["clients"]))
        lines.append(
            f"| {r['clients']} | {r['throughput_events_per_s']:,.0f} | "
            f"{r['event_time_mean_s'] * 1e3:.2f} | {r['infer_time_mean_s'] * 1e3:.2f} | "
            f"{lr['throughput_events_per_s']:,.0f} | {sp:.2f} |"
            if lr
            else f"| {r['clients']} | {r['throughput_events_per_s']:,.0f} | "
            f"{r['event_time_mean_s'] * 1e3:.2f} | {r['infer_time_mean_s'] * 1e3:.2f} | - | - |"
        )
    f = result["fit"]
    lines.append("")
    lines.append(
        f"Fit: t_CPU = {f['t_cpu_s'] * 1e3:.3f} ms, p = {f['p']:.3f}, "
        f"t_GPU = {f['t_gpu_s'] * 1e3:.4f} ± {f['t_gpu_err_s'] * 1e3:.4f} ms, "
        f"t_latency = {f['t_latency_s'] * 1e3:.3f} ± {f['t_latency_err_s'] * 1e3:.3f} ms, "
        f"t_ideal = {f['t_ideal_s'] * 1e3:.3f} ms -> saturation at N = {f['n_saturation']:.1f} "
        f"(server capacity {f['server_capacity_per_s']:,.0f} requests/s)."
    )
    return "\n".join(lines)
