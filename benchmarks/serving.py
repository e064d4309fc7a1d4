"""Serving benchmark: lightspeed vs NVIDIA Triton vs MLServer, side by side in one run.

Workloads (the SONIC pattern on a small CPU box):
  * the zoo jet-tagging MLP (16->64->32->32->5, ONNX; a torch export of the same shape if the
    zoo file is absent), batch-1 requests from an asyncio gRPC client at concurrency
    1, 4, 16, 64, with dynamic batching off and on;
  * FACILE-like: requests of 16,000 rows x 15 features (the zoo FACILE 15->36->36->1 net);
  * both again on the lightspeed emulator backend (bit-exact fixed point), when the core is
    present;
  * batch-1 at concurrency 16 and 64 spread over 2 client connections, against
    ``lightspeed serve --workers 2`` (two processes sharing the port through SO_REUSEPORT; the
    kernel spreads connections, not requests), one-process lightspeed and Triton.

All servers run as subprocesses on 127.0.0.1 for the whole run. At each point they are
measured one after the other with the same load generator: one asyncio process using grpc.aio
with a pre-serialized request, so the client does the same work for every server. Triton is
the nvidia-pytriton wheel's tritonserver with the python backend running onnxruntime (the
wheel has no onnxruntime backend); MLServer 1.7 runs an onnxruntime MLModel.

Writes benchmarks/results/serving.json and serving.png and prints a Markdown table.

    python benchmarks/serving.py                 # full run (~4-5 min)
    python benchmarks/serving.py --quick         # 1 s per point
    python benchmarks/serving.py --concurrency 16 64   # only those points (while iterating)
    python benchmarks/serving.py --concurrency 16 64 --baseline HEAD~3 --repeat 3 \
        --out benchmarks/results/serving_regression.json   # vs an older commit, median of 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHOD = "/inference.GRPCInferenceService/ModelInfer"


# ----------------------------------------------------------------------------- models
WORKERS2 = "lightspeed --workers 2"
GRPCIO = "lightspeed (grpcio front end)"
TWO_CONN = "mlp batch-1, 2 connections"


def export_mlp(path: Path, layers=(16, 64, 32, 32, 5), seed: int = 0) -> Path:
    """A torch MLP exported to ONNX with a dynamic batch dimension."""
    import torch

    torch.manual_seed(seed)
    mods: list = []
    for i, (a, b) in enumerate(itertools.pairwise(layers)):
        mods.append(torch.nn.Linear(a, b))
        if i < len(layers) - 2:
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).eval()
    x = torch.zeros(1, layers[0])
    torch.onnx.export(
        net,
        (x,),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    return path


# ----------------------------------------------------------------------------- load client
def build_request(model: str, x: np.ndarray, inp: str = "x", out: str = "y") -> bytes:
    from tritonclient.grpc import service_pb2 as pb

    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name=inp, datatype="FP32", shape=list(x.shape))
    req.outputs.add(name=out)
    req.raw_input_contents.append(np.ascontiguousarray(x, np.float32).tobytes())
    return req.SerializeToString()


def decode_response(raw: bytes) -> np.ndarray:
    from tritonclient.grpc import service_pb2 as pb

    resp = pb.ModelInferResponse.FromString(raw)
    out = resp.outputs[0]
    dtype = {"FP32": np.float32, "FP64": np.float64}[out.datatype]
    if resp.raw_output_contents:
        return np.frombuffer(resp.raw_output_contents[0], dtype).reshape(list(out.shape))
    return np.asarray(out.contents.fp32_contents, dtype).reshape(list(out.shape))


async def _load(
    url: str, payload: bytes, concurrency: int, duration: float, warmup: float, connections=1
):
    import grpc

    opts = [("grpc.max_receive_message_length", 1 << 28), ("grpc.max_send_message_length", 1 << 28)]
    if connections > 1:  # one TCP connection per channel (gRPC shares them by default)
        opts.append(("grpc.use_local_subchannel_pool", 1))
    channels = [grpc.aio.insecure_channel(url, options=opts) for _ in range(connections)]
    try:
        # raw bytes in/out: the client does no protobuf work
        calls = [ch.unary_unary(METHOD) for ch in channels]
        return await _load_calls(calls, payload, concurrency, duration, warmup)
    finally:
        for ch in channels:
            await ch.close()


async def _load_calls(calls, payload: bytes, concurrency: int, duration: float, warmup: float):
    import grpc

    first = None
    for call in calls:
        first = await call(payload)
    lat: list[float] = []
    errors = 0
    start = time.perf_counter()
    t_measure = start + warmup
    t_end = t_measure + duration

    async def worker(call):
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            try:
                await call(payload)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            t1 = time.perf_counter()
            if t0 >= t_measure:
                lat.append(t1 - t0)

    await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(concurrency)))
    return first, lat, errors


async def _load_stream(url: str, payload: bytes, concurrency: int, duration: float, warmup: float):
    """The same requests on one ModelStreamInfer stream, ``concurrency`` in flight."""
    import grpc

    opts = [("grpc.max_receive_message_length", 1 << 28), ("grpc.max_send_message_length", 1 << 28)]
    async with grpc.aio.insecure_channel(url, options=opts) as channel:
        call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")()
        sent: list[float] = []
        lat: list[float] = []
        errors = 0
        first = None
        start = time.perf_counter()
        t_measure = start + warmup
        t_end = t_measure + duration
        slots = asyncio.Semaphore(concurrency)

        async def writer():
            while time.perf_counter() < t_end:
                await slots.acquire()
                sent.append(time.perf_counter())
                await call.write(payload)
            await call.done_writing()

        async def reader():
            nonlocal errors, first
            from tritonclient.grpc import service_pb2 as pb

            i = 0
            async for raw in call:
                t1 = time.perf_counter()
                slots.release()
                if first is None:
                    msg = pb.ModelStreamInferResponse.FromString(raw)
                    if msg.error_message:
                        raise RuntimeError(msg.error_message)
                    first = msg.infer_response.SerializeToString()
                # responses come back in order for one model at a time, so pair them up
                t0 = sent[i]
                i += 1
                if t0 >= t_measure:
                    lat.append(t1 - t0)

        await asyncio.gather(writer(), reader())
        return first, lat, errors


def proc_tree_cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process and all its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
        todo += [c for c, (ppid, _) in stats.items() if ppid == p]
    return total


def measure(
    url: str,
    payload: bytes,
    concurrency: int,
    duration: float,
    warmup: float = 0.5,
    server_pid: int | None = None,
    stream: bool = False,
    connections: int = 1,
):
    import resource

    cpu0 = proc_tree_cpu_s(server_pid) if server_pid else 0.0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    if stream:
        coro = _load_stream(url, payload, concurrency, duration, warmup)
    else:
        coro = _load(url, payload, concurrency, duration, warmup, connections)
    first, lat, errors = asyncio.run(coro)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu1 = proc_tree_cpu_s(server_pid) if server_pid else 0.0
    # requests in the warm-up are not in ``lat``; scale them in by time
    n_all = max(1, len(lat)) * (duration + warmup) / duration
    client_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / n_all
    lat_ms = np.asarray(lat) * 1e3
    return first, {
        "server_cpu_us_per_req": (cpu1 - cpu0) / n_all * 1e6 if server_pid else None,
        "client_cpu_us_per_req": client_cpu * 1e6,
        "requests": len(lat),
        "errors": errors,
        "throughput_rps": len(lat) / duration,
        "p50_ms": float(np.percentile(lat_ms, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat_ms, 99)) if len(lat) else None,
    }


def server_batch_stats(url: str, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) from ModelStatistics; (0, 0) when not offered."""
    import tritonclient.grpc as g

    try:
        s = g.InferenceServerClient(url).get_inference_statistics(model, as_json=True)
        m = s["model_stats"][0]
        return int(m.get("inference_count", 0)), int(m.get("execution_count", 0))
    except Exception:
        return 0, 0


# ----------------------------------------------------------------------------- servers
class LightspeedProc:
    def __init__(self, repo: Path, extra: tuple[str, ...] = (), src: Path = ROOT / "src"):
        from lightspeed.serve.peers import free_port

        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(src))
        self.log = open(Path(tempfile.mkdtemp()) / "lightspeed.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lightspeed.cli",
                "serve",
                str(repo),
                "--grpc-port",
                str(self.port),
                "--http-port",
                "-1",
                "--metrics-port",
                "-1",
                "--log-level",
                "WARNING",
                *extra,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.grpc_url = f"127.0.0.1:{self.port}"
        self.pid = self.proc.pid
        import tritonclient.grpc as g

        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if g.InferenceServerClient(self.grpc_url).is_server_ready():
                    return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"lightspeed serve did not start; see {self.log.name}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def handler_cpu_us(repo: Path, model: str, x: np.ndarray, inp: str, out: str, n: int = 3000):
    """CPU µs per request of lightspeed's own request path, in-process and without gRPC:
    parse the request, decode, validate, schedule, run onnxruntime, encode, serialize."""
    from tritonclient.grpc import service_pb2 as pb

    from lightspeed.serve.core import InferenceCore
    from lightspeed.serve.grpc_server import InferenceServicer
    from lightspeed.serve.repository import ModelRepository

    raw = build_request(model, x, inp, out)

    async def main():
        core = InferenceCore(ModelRepository(repo))
        await core.load(model)
        servicer = InferenceServicer(core)
        for _ in range(200):
            await servicer._infer(pb.ModelInferRequest.FromString(raw))
        t0 = time.process_time()
        for _ in range(n):
            (await servicer._infer(pb.ModelInferRequest.FromString(raw))).SerializeToString()
        cost = (time.process_time() - t0) / n * 1e6
        await core.close()
        return cost

    return asyncio.run(main())


def zoo_or_export(work: Path, name: str, layers, inp: str, out: str) -> tuple[Path, str, str]:
    """The trained zoo model when present, else a torch MLP of the same shape."""
    zoo = ROOT / "src" / "lightspeed" / "zoo" / "models" / f"{name}.onnx"
    if zoo.exists():
        return zoo, inp, out
    return export_mlp(work / f"{name}.onnx", layers), "x", "y"


def make_repos(work: Path, models: dict, compiled: dict) -> dict[str, Path]:
    from lightspeed.serve.repo_add import EntryOptions, add_model

    repos = {}
    for backend in ("onnxruntime", "python"):
        repo = work / f"repo_{backend}"
        for name, (src, mbs) in models.items():
            add_model(
                src,
                repo,
                name,
                EntryOptions(max_batch_size=mbs, dynamic_batching=False, backend=backend),
            )
            add_model(src, repo, f"{name}_db", EntryOptions(max_batch_size=mbs, backend=backend))
        if backend == "onnxruntime":
            for name, (src, mbs) in compiled.items():
                add_model(src, repo, name, EntryOptions(max_batch_size=mbs, dynamic_batching=False))
                add_model(src, repo, f"{name}_db", EntryOptions(max_batch_size=mbs))
        repos[backend] = repo
    return repos


def quantize_for_emulator(onnx: Path, calib: np.ndarray, out: Path) -> Path | None:
    try:
        import lightspeed

        q = lightspeed.quantize(lightspeed.load(str(onnx)), precision="auto", calibration=calib)
        q.save(str(out))
        return out
    except Exception as exc:  # the emulator rows are skipped, and say why
        print(f"emulator backend skipped for {onnx.name}: {exc}", file=sys.stderr)
        return None


# ----------------------------------------------------------------------------- run
def checkout_src(ref: str, work: Path) -> Path:
    """The ``src`` tree of a git commit (the baseline the current code is compared with)."""
    dest = work / f"baseline-{ref}"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def run(args) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    import onnxruntime as ort

    from lightspeed.serve import peers

    work = Path(tempfile.mkdtemp(prefix="ls-bench-"))
    rng = np.random.default_rng(1)
    jets, j_in, j_out = zoo_or_export(work, "jet_tagger", (16, 64, 32, 32, 5), "features", "logits")
    facile, f_in, f_out = zoo_or_export(work, "facile", (15, 36, 36, 1), "rings", "pt")
    mlp_x = rng.normal(size=(1, 16)).astype(np.float32)
    facile_x = np.abs(rng.normal(20, 30, size=(16000, 15))).astype(np.float32)
    compiled = {}
    c = quantize_for_emulator(
        jets, rng.normal(size=(4000, 16)).astype(np.float32), work / "jets_compiled"
    )
    if c is not None:
        compiled["mlp_emu"] = (c, 1024)
    c = quantize_for_emulator(facile, facile_x[:4000], work / "facile_compiled")
    if c is not None:
        compiled["facile_emu"] = (c, 16000)
    repos = make_repos(work, {"mlp": (jets, 1024), "facile": (facile, 16000)}, compiled)
    ref_mlp = ort.InferenceSession(str(jets)).run(None, {j_in: mlp_x})[0]
    ref_facile = ort.InferenceSession(str(facile)).run(None, {f_in: facile_x})[0]
    emu_ref = {}
    if compiled:
        import lightspeed

        if "mlp_emu" in compiled:
            emu_ref["mlp_emu"] = lightspeed.load_compiled(str(compiled["mlp_emu"][0])).predict(
                mlp_x
            )
        if "facile_emu" in compiled:
            emu_ref["facile_emu"] = lightspeed.load_compiled(
                str(compiled["facile_emu"][0])
            ).predict(facile_x)

    handler = {
        m: handler_cpu_us(repos["onnxruntime"], m, mlp_x, j_in, j_out) for m in ("mlp", "mlp_db")
    }
    print(f"lightspeed request path without gRPC (CPU µs/request): {handler}", flush=True)

    # every server stays up for the whole run; each point is measured on all of them in
    # turn, so machine-load drift hits them alike
    servers: dict[str, tuple[str, dict[str, str | None], bool, int]] = {}
    stack: list = []
    every = {"mlp": "mlp", "mlp_db": "mlp_db", "facile": "facile"}
    ls = LightspeedProc(repos["onnxruntime"])
    stack.append(ls)
    servers["lightspeed"] = (ls.grpc_url, every, True, ls.pid)
    baseline = None
    if args.baseline:
        # the same server from an earlier commit, measured in the same run (regression check)
        baseline = f"lightspeed @{args.baseline}"
        old = LightspeedProc(repos["onnxruntime"], src=checkout_src(args.baseline, work))
        stack.append(old)
        servers[baseline] = (old.grpc_url, every, True, old.pid)
    ls2 = LightspeedProc(repos["onnxruntime"], extra=("--workers", "2"))
    stack.append(ls2)
    # statistics are per worker, so the batch size is not read back (stats=False)
    servers[WORKERS2] = (ls2.grpc_url, every, False, ls2.pid)
    if compiled:
        emu = {
            "mlp": "mlp_emu" if "mlp_emu" in compiled else None,
            "mlp_db": "mlp_emu_db" if "mlp_emu" in compiled else None,
            "facile": "facile_emu" if "facile_emu" in compiled else None,
        }
        servers["lightspeed (emulator)"] = (ls.grpc_url, emu, True, ls.pid)
    try:
        tr = peers.start_triton(repos["python"])
        stack.append(tr)
        servers["triton (python+ort)"] = (tr.grpc_url, every, True, tr.proc.pid)
    except Exception as exc:
        print(f"triton skipped: {exc}", file=sys.stderr)
    try:
        ml = peers.start_mlserver(
            [("mlp", jets, 0, 0.0), ("mlp_db", jets, 64, 0.0005), ("facile", facile, 0, 0.0)]
        )
        stack.append(ml)
        servers["mlserver"] = (ml.grpc_url, every, False, ml.proc.pid)
    except Exception as exc:
        print(f"mlserver skipped: {exc}", file=sys.stderr)
    # the same server on grpcio's grpc.aio transport: what our own HTTP/2 front end saves
    lsg = LightspeedProc(repos["onnxruntime"], extra=("--grpc-frontend", "grpcio"))
    stack.append(lsg)
    servers[GRPCIO] = (
        lsg.grpc_url,
        {"mlp": "mlp", "mlp_db": "mlp_db", "facile": None},
        True,
        lsg.pid,
    )

    rows: list[dict] = []
    dur = args.duration

    def check(server, model, first, workload):
        got = decode_response(first)
        if "emu" in (model or ""):
            key = "mlp_emu" if workload.startswith("mlp") else "facile_emu"
            return {"bit_exact_vs_emulator": bool(np.array_equal(got, emu_ref[key]))}
        ref = ref_mlp if workload.startswith("mlp") else ref_facile
        return {"max_abs_err_vs_ort": float(np.abs(got - ref).max())}

    try:
        points = [("mlp batch-1", b, c) for b in ("off", "on") for c in (1, 4, 16, 64)]
        points += [("mlp batch-1, one stream", b, c) for b in ("off", "on") for c in (16, 64)]
        points += [(TWO_CONN, b, c) for b in ("off", "on") for c in (16, 64)]
        points += [("facile 16000x15", "off", c) for c in (1, 4)]
        if args.concurrency:
            points = [p for p in points if p[2] in args.concurrency]
        # --repeat N: every point N times, the servers interleaved, the median kept
        for workload, batching, conc in [p for p in points for _ in range(args.repeat)]:
            stream = "stream" in workload
            connections = 2 if workload == TWO_CONN else 1
            for server, (url, names, stats, pid) in servers.items():
                # --workers 2 only pays with several connections; the other servers
                # join that workload only where they are the comparison
                if (server == WORKERS2) != (workload == TWO_CONN) and not (
                    workload == TWO_CONN and server in ("lightspeed", "triton (python+ort)")
                ):
                    continue
                if workload.startswith("mlp"):
                    model = names["mlp_db" if batching == "on" else "mlp"]
                    x, inp, out = mlp_x, j_in, j_out
                else:
                    model = names["facile"]
                    x, inp, out = facile_x, f_in, f_out
                if model is None or (server in (GRPCIO, baseline) and workload != "mlp batch-1"):
                    continue
                payload = build_request(model, x, inp, out)
                before = server_batch_stats(url, model) if stats else (0, 0)
                try:
                    first, r = measure(
                        url,
                        payload,
                        conc,
                        dur,
                        server_pid=pid,
                        stream=stream,
                        connections=connections,
                    )
                except Exception as exc:  # e.g. a server without ModelStreamInfer
                    print(f"{server} {workload}: {str(exc).splitlines()[0]}", file=sys.stderr)
                    continue
                after = server_batch_stats(url, model) if stats else (0, 0)
                ni, ne = after[0] - before[0], after[1] - before[1]
                r.update(
                    server=server,
                    workload=workload,
                    batching=batching,
                    concurrency=conc,
                    model=model,
                    avg_batch=(ni / ne) if ne else None,
                )
                r["rows_per_s"] = r["throughput_rps"] * len(x)
                r.update(check(server, model, first, workload))
                rows.append(r)
                print(_fmt(r), flush=True)
    finally:
        for proc in reversed(stack):
            proc.stop()
    rows = median_rows(rows)

    return {
        "benchmark": "serving",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
        },
        "models": {"mlp": str(jets), "facile": str(facile)},
        "duration_s_per_point": dur,
        "lightspeed_request_path_cpu_us_without_grpc": handler,
        "client": "one asyncio process, grpc.aio, pre-serialized ModelInferRequest, raw bytes "
        "responses; servers measured in turn at each point",
        "baseline": args.baseline,
        "rows": rows,
    }


def median_rows(rows: list[dict]) -> list[dict]:
    """One row per (server, point): the run with the median throughput (``repeats`` kept)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["server"], r["workload"], r["batching"], r["concurrency"]), []).append(
            r
        )
    out = []
    for runs in groups.values():
        runs = sorted(runs, key=lambda r: r["throughput_rps"])
        mid = dict(runs[len(runs) // 2])
        if len(runs) > 1:
            mid["repeats_rps"] = [round(r["throughput_rps"]) for r in runs]
        out.append(mid)
    return out


def _fmt(r: dict) -> str:
    def num(key, fmt):
        v = r.get(key)
        return format(v, fmt) if v is not None else "-"

    big = r.get("rows_per_s") and r["rows_per_s"] > 10 * r["throughput_rps"]
    rows = f"{r['rows_per_s'] / 1e6:.2f}M" if big else "-"
    return (
        f"| {r['server']} | {r['workload']} | {r['batching']} | {r['concurrency']} | "
        f"{r['throughput_rps']:.0f} | {rows} | {num('p50_ms', '.2f')} | {num('p99_ms', '.2f')} | "
        f"{num('avg_batch', '.1f')} | {num('server_cpu_us_per_req', '.0f')} | "
        f"{num('client_cpu_us_per_req', '.0f')} | {r['errors']} |"
    )


TRITON, MLSERVER = "triton (python+ort)", "mlserver"


def target_rows(result: dict) -> list[dict]:
    """The issue's targets, point by point: at concurrency >= 16 lightspeed's throughput
    >= Triton's with p99 no worse, and >= 3x MLServer's; FACILE on the emulator >= 1M rows/s."""
    index = {
        (r["server"], r["workload"], r["batching"], r["concurrency"]): r for r in result["rows"]
    }
    out = []
    for (server, workload, batching, conc), r in index.items():
        if workload.startswith("facile") and server == "lightspeed (emulator)":
            out.append(
                {
                    "server": server,
                    "workload": workload,
                    "batching": batching,
                    "concurrency": conc,
                    "rows_per_s": r["rows_per_s"],
                    "met": r["rows_per_s"] >= 1e6,
                }
            )
            continue
        if conc < 16 or server not in ("lightspeed", "lightspeed (emulator)", WORKERS2):
            continue
        tr = index.get((TRITON, workload, batching, conc))
        ml = index.get((MLSERVER, workload, batching, conc))
        if tr is None:
            continue
        row = {
            "server": server,
            "workload": workload,
            "batching": batching,
            "concurrency": conc,
            "vs_triton": r["throughput_rps"] / tr["throughput_rps"],
            "p99_ms": r["p99_ms"],
            "triton_p99_ms": tr["p99_ms"],
            "vs_mlserver": r["throughput_rps"] / ml["throughput_rps"] if ml else None,
        }
        row["met"] = (
            row["vs_triton"] >= 1
            and r["p99_ms"] <= tr["p99_ms"]
            and (ml is None or row["vs_mlserver"] >= 3)
        )
        out.append(row)
    return out


def baseline_rows(result: dict) -> list[dict]:
    """lightspeed now vs the baseline commit at each batch-1 point (target: within 5%)."""
    base = result.get("baseline")
    if not base:
        return []
    index = {
        (r["server"], r["workload"], r["batching"], r["concurrency"]): r for r in result["rows"]
    }
    out = []
    for (server, workload, batching, conc), r in index.items():
        old = index.get((f"lightspeed @{base}", workload, batching, conc))
        if server != "lightspeed" or old is None:
            continue
        ratio = r["throughput_rps"] / old["throughput_rps"]
        out.append(
            {
                "workload": workload,
                "batching": batching,
                "concurrency": conc,
                "rps": r["throughput_rps"],
                "baseline_rps": old["throughput_rps"],
                "vs_baseline": ratio,
                "p99_ms": r["p99_ms"],
                "baseline_p99_ms": old["p99_ms"],
                "met": ratio >= 0.95,
            }
        )
    return out


def baseline_markdown(rows: list[dict], ref: str) -> str:
    lines = [
        f"| workload | dyn. batching | concurrency | req/s now | req/s @{ref} | ratio "
        "| p99 ms now (@ref) | within 5% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in rows:
        lines.append(
            f"| {t['workload']} | {t['batching']} | {t['concurrency']} | {t['rps']:.0f} "
            f"| {t['baseline_rps']:.0f} | {t['vs_baseline']:.3f} "
            f"| {t['p99_ms']:.2f} ({t['baseline_p99_ms']:.2f}) "
            f"| {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines)


def targets_markdown(rows: list[dict]) -> str:
    lines = [
        "| server | workload | dyn. batching | concurrency | vs Triton (req/s) "
        "| p99 ms (Triton) | vs MLServer | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in rows:
        head = f"| {t['server']} | {t['workload']} | {t['batching']} | {t['concurrency']} "
        mark = "met" if t["met"] else "**not met**"
        if "rows_per_s" in t:
            lines.append(head + f"| {t['rows_per_s'] / 1e6:.2f}M rows/s (≥ 1M) | | | {mark} |")
            continue
        ml = f"{t['vs_mlserver']:.2f}x" if t["vs_mlserver"] is not None else "-"
        lines.append(
            head + f"| {t['vs_triton']:.2f}x | {t['p99_ms']:.1f} ({t['triton_p99_ms']:.1f}) "
            f"| {ml} | {mark} |"
        )
    return "\n".join(lines)


def markdown(result: dict) -> str:
    lines = [
        "| server | workload | dyn. batching | concurrency | req/s | rows/s | p50 ms | p99 ms "
        "| avg batch | server CPU µs/req | client CPU µs/req | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_fmt(r) for r in result["rows"]]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    rows = [r for r in result["rows"] if r["workload"].startswith("mlp batch-1")]
    for server, batching, workload in sorted(
        {(r["server"], r["batching"], r["workload"]) for r in rows}
    ):
        sel = sorted(
            (
                r
                for r in rows
                if r["server"] == server and r["batching"] == batching and r["workload"] == workload
            ),
            key=lambda r: r["concurrency"],
        )
        cs = [r["concurrency"] for r in sel]
        colors = {"lightspeed": "C0", "lightspeed (emulator)": "C4", "triton (python+ort)": "C2",
                  "mlserver": "C1", GRPCIO: "C7"}  # fmt: skip
        stream = "stream" in workload
        style = ":" if stream else ("-" if batching == "on" else "--")
        marker = "s" if stream else ("o" if batching == "on" else "x")
        label = f"{server}, batching {batching}" + (", stream" if stream else "")
        kw = {"color": colors.get(server), "marker": marker, "label": label}
        axes[0].plot(cs, [r["throughput_rps"] for r in sel], style, **kw)
        axes[1].plot(cs, [r["p99_ms"] for r in sel], style, **kw)
        axes[2].plot(cs, [r["server_cpu_us_per_req"] or np.nan for r in sel], style, **kw)
    titles = ("throughput (req/s)", "p99 latency (ms)", "server CPU per request (µs)")
    for ax, label in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent batch-1 requests")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Jet MLP, batch-1 gRPC requests, all on {result['machine']['cpus']} shared CPU cores "
        "(client included)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds measured per point")
    ap.add_argument("--quick", action="store_true", help="1 s per point (smoke run)")
    ap.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=None,
        help="measure only the points at these concurrencies (default: all)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure every point this many times (servers interleaved) and keep the median",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the JSON/PNG here instead of benchmarks/results/serving.json "
        "(e.g. for a --baseline regression check)",
    )
    ap.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help="also serve the batch-1 MLP from this git commit's src (e.g. HEAD~1), measured "
        "in the same run, to check a change for a slowdown",
    )
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="also write the tables to docs/benchmarks/serving_table.md (for serving.md)",
    )
    args = ap.parse_args()
    if args.quick:
        args.duration = 1.0
    t0 = time.time()
    result = run(args)
    result["wall_s"] = time.time() - t0
    result["targets"] = target_rows(result)
    result["vs_baseline"] = baseline_rows(result)
    out_json = args.out or RESULTS / "serving.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1))
    plot(result, out_json.with_suffix(".png"))
    table = targets_markdown(result["targets"]) + "\n\n" + markdown(result)
    if result["vs_baseline"]:
        table = baseline_markdown(result["vs_baseline"], args.baseline) + "\n\n" + table
    print(table)
    if args.write_docs:
        (ROOT / "docs" / "benchmarks").mkdir(parents=True, exist_ok=True)
        (ROOT / "docs" / "benchmarks" / "serving_table.md").write_text(table + "\n")
    print(f"wrote {out_json} and its .png in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
