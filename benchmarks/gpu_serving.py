"""GPU serving benchmark: the same models on KIND_GPU and KIND_CPU instances, side by side.

The co-processor half of "inference as a service": lightspeed serve runs onnxruntime with
its CUDA execution provider for ``instance_group { kind: KIND_GPU }``. For each model (the
jet-tagging MLP and a wide MLP that gives a GPU something to do) and each request size
(1, 64 and 1024 rows), an asyncio gRPC client measures throughput and latency at several
concurrencies against a GPU entry and a CPU entry of one server, with dynamic batching on.
Results are checked against onnxruntime on the CPU (max abs error).

Writes benchmarks/results/gpu_serving.json and gpu_serving.png and prints a Markdown table.
Without CUDA (no onnxruntime-gpu or no driver) it stops with a message, unless ``--cpu-only``
is given, which measures the CPU entries alone (how the script is tested on CPU machines).

    python benchmarks/gpu_serving.py                  # on a GPU machine (~3 min)
    python benchmarks/gpu_serving.py --cpu-only --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import (
    LightspeedProc,
    build_request,
    decode_response,
    export_mlp,
    measure,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"jet_mlp": (16, 64, 32, 32, 5), "wide_mlp": (128, 1024, 1024, 1024, 16)}


def gpu_status() -> dict:
    """Whether onnxruntime can use CUDA here, and the GPU's name when nvidia-smi knows it."""
    import onnxruntime as ort

    providers = ort.get_available_providers()
    status = {"cuda_provider": "CUDAExecutionProvider" in providers, "providers": providers}
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        status["gpu"] = out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        status["gpu"] = None
    return status


def write_repo(work: Path, models: dict[str, Path], kinds: list[str]) -> Path:
    repo = work / "repo"
    for name, onnx in models.items():
        for kind in kinds:
            d = repo / f"{name}_{kind}"
            (d / "1").mkdir(parents=True)
            (d / "1" / "model.onnx").write_bytes(onnx.read_bytes())
            (d / "config.pbtxt").write_text(
                f'name: "{name}_{kind}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4096\n'
                f"instance_group [{{ count: 1 kind: KIND_{kind.upper()} }}]\n"
                "dynamic_batching { max_queue_delay_microseconds: 500 }\n"
            )
    return repo


def run(args) -> dict:
    import onnxruntime as ort

    status = gpu_status()
    kinds = ["cpu"] if args.cpu_only else ["gpu", "cpu"]
    if "gpu" in kinds and not status["cuda_provider"]:
        raise SystemExit(
            "onnxruntime has no CUDAExecutionProvider here (providers: "
            f"{status['providers']}); install onnxruntime-gpu on a machine with a CUDA "
            "driver, or pass --cpu-only"
        )
    work = Path(tempfile.mkdtemp(prefix="ls-gpu-bench-"))
    models = {name: export_mlp(work / f"{name}.onnx", layers) for name, layers in MODELS.items()}
    repo = write_repo(work, models, kinds)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    with LightspeedProc(repo) as server:
        for name, layers in MODELS.items():
            session = ort.InferenceSession(str(models[name]))
            for batch in args.batch:
                x = rng.normal(size=(batch, layers[0])).astype(np.float32)
                ref = session.run(None, {session.get_inputs()[0].name: x})[0]
                for conc in args.concurrency:
                    for kind in kinds:
                        model = f"{name}_{kind}"
                        payload = build_request(model, x, "x", "y")
                        first, r = measure(
                            server.grpc_url, payload, conc, args.duration, server_pid=server.pid
                        )
                        r.update(
                            model=name,
                            kind=kind,
                            rows_per_request=batch,
                            concurrency=conc,
                            rows_per_s=r["throughput_rps"] * batch,
                            max_abs_err_vs_cpu_ort=float(
                                np.abs(decode_response(first) - ref).max()
                            ),
                        )
                        rows.append(r)
                        print(row_markdown(r), flush=True)
    return {
        "benchmark": "gpu_serving",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "gpu": status,
        "kinds": kinds,
        "models": {k: list(v) for k, v in MODELS.items()},
        "duration_s_per_point": args.duration,
        "client": "one asyncio process, grpc.aio, pre-serialized ModelInferRequest",
        "server": "lightspeed serve, onnxruntime backend, one instance per entry, "
        "dynamic batching (max_queue_delay 500 us)",
        "rows": rows,
    }


HEADER = (
    "| model | instances | rows/request | concurrency | req/s | rows/s | p50 ms | p99 ms "
    "| server CPU µs/req | max abs err |\n|---|---|---|---|---|---|---|---|---|---|"
)


def row_markdown(r: dict) -> str:
    return (
        f"| {r['model']} | {r['kind'].upper()} | {r['rows_per_request']} | {r['concurrency']} "
        f"| {r['throughput_rps']:.0f} | {r['rows_per_s']:.3g} | {r['p50_ms'] or 0:.2f} "
        f"| {r['p99_ms'] or 0:.2f} | {r['server_cpu_us_per_req'] or 0:.0f} "
        f"| {r['max_abs_err_vs_cpu_ort']:.1e} |"
    )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    models = list(result["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for kind in result["kinds"]:
            for batch in sorted({r["rows_per_request"] for r in rows}):
                pts = [
                    r
                    for r in rows
                    if r["model"] == model and r["kind"] == kind and r["rows_per_request"] == batch
                ]
                ax.plot(
                    [r["concurrency"] for r in pts],
                    [r["rows_per_s"] for r in pts],
                    marker="o",
                    linestyle="-" if kind == "gpu" else "--",
                    label=f"{kind.upper()}, {batch} rows/request",
                )
        ax.set(xscale="log", yscale="log", xlabel="concurrent requests", ylabel="rows / s")
        ax.set_title(f"{model} {result['models'][model]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    gpu = result["gpu"].get("gpu") or "no GPU"
    fig.suptitle(f"lightspeed serve, onnxruntime, KIND_GPU vs KIND_CPU ({gpu})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds measured per point")
    ap.add_argument("--quick", action="store_true", help="0.5 s per point, fewer points")
    ap.add_argument("--cpu-only", action="store_true", help="measure the CPU entries only")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64, 1024])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration = 0.5
        args.concurrency = args.concurrency[:2]
        args.batch = args.batch[:2]
    t0 = time.time()
    result = run(args)
    result["wall_s"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_serving.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / "gpu_serving.png")
    print(HEADER)
    for r in result["rows"]:
        print(row_markdown(r))
    print(f"wrote {args.out / 'gpu_serving.json'} and gpu_serving.png in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
