"""MLPerf LoadGen: the four scenarios on the jet tagger, in-process, through lightspeed serve, and
through NVIDIA Triton, side by side in one run.

Targets (all over the shipped sample's 6,250 test jets, one LoadGen SUT for all):
  * inprocess  - the compiled auto-precision jet tagger, bit-exact emulator in this process;
  * ls-fixed   - the same compiled model served by `lightspeed serve` (emulator backend);
  * ls-ort     - the float ONNX served by `lightspeed serve` (onnxruntime);
  * triton-ort - the float ONNX served by real Triton 2.51 (python backend running
                 onnxruntime; the nvidia-pytriton wheel has no onnxruntime backend),
                 skipped when /work/peers/triton is absent.

Each run: performance mode (2 s minimum duration, short min query counts; MLPerf
submissions need 600 s) and accuracy mode ("99% of FP32": top-1 of the target >= 0.99 x
top-1 of the float ONNX on the same samples). Servers are subprocesses on free 127.0.0.1
ports, stopped at the end.

Writes benchmarks/results/loadgen.json (+ LoadGen's logs under benchmarks/results/loadgen/, less
the accuracy-mode response logs, which summary.json already holds the result of)
and prints a Markdown table.

    python benchmarks/loadgen_scenarios.py            # ~3-5 min on 2 cores
    python benchmarks/loadgen_scenarios.py --quick    # 1 s minimum duration, 2,000 jets
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("singlestream", "multistream", "server", "offline")


def compile_tagger(outdir: Path) -> Path:
    import lightspeed
    from lightspeed import zoo
    from lightspeed.data import load_default_jets

    train, _ = load_default_jets().split(test_fraction=0.25, seed=0)
    q = lightspeed.quantize(
        lightspeed.load(zoo.model_path("jet_tagger")),
        precision="auto",
        calibration=train.features[:2000],
    )
    return Path(q.save(outdir / "jet_tagger"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 s runs over 2,000 jets")
    ap.add_argument("--no-triton", action="store_true", help="skip the Triton peer")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument(
        "--server-latency-ms",
        type=float,
        default=20.0,
        help="Server scenario p99 bound (default 20: this shared 2-core box has scheduling "
        "stalls of several ms under load)",
    )
    args = ap.parse_args()

    from lightspeed import zoo
    from lightspeed.bench._targets import ServerProcess
    from lightspeed.bench.loadgen import LoadgenConfig, markdown_table, run_loadgen
    from lightspeed.serve.repo_add import EntryOptions, add_model

    onnx = zoo.model_path("jet_tagger")
    logs = RESULTS / "loadgen"
    shutil.rmtree(logs, ignore_errors=True)
    summaries = []
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="ls-loadgen-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        compiled = compile_tagger(tmp)
        repo = tmp / "repo"
        add_model(compiled, repo, "jet_tagger_fixed", EntryOptions())
        add_model(onnx, repo, "jet_tagger", EntryOptions())
        server = stack.enter_context(ServerProcess(repo, log_file=tmp / "server.log"))
        targets = {
            "inprocess": f"inprocess:{compiled}",
            "ls-fixed": server.target("jet_tagger_fixed"),
            "ls-ort": server.target("jet_tagger"),
        }
        if not args.no_triton:
            try:
                from lightspeed.serve.peers import start_triton

                trepo = tmp / "triton_repo"
                add_model(onnx, trepo, "jet_tagger", EntryOptions(backend="python"))
                triton = stack.enter_context(start_triton(trepo))
                targets["triton-ort"] = f"grpc://127.0.0.1:{triton.grpc_port}/jet_tagger"
            except Exception as exc:  # peer missing: say so, measure the rest
                print(f"Triton peer skipped: {exc}")
        for scenario in args.scenarios.split(","):
            for name, target in targets.items():
                cfg = LoadgenConfig(
                    scenario=scenario,
                    target=target,
                    outdir=logs / f"{scenario}_{name}",
                    count=2000 if args.quick else 0,
                    min_duration_ms=1000 if args.quick else 2000,
                    reference=str(onnx),
                    target_latency_ms=args.server_latency_ms,
                )
                t0 = time.time()
                s = run_loadgen(cfg)
                s["name"] = name
                # Keep the repository small: the accuracy log (every response in hex, ~0.8 MB)
                # has been read into summary.json; empty trace files carry nothing.
                (cfg.outdir / "accuracy" / "mlperf_log_accuracy.json").unlink(missing_ok=True)
                for trace in Path(cfg.outdir).rglob("mlperf_log_trace.json"):
                    trace.unlink()
                summaries.append(s)
                perf = s["performance"]
                print(
                    f"{scenario:12s} {name:10s} {perf['samples_per_second'] or 0:10,.0f} samples/s "
                    f"{perf['validity']:7s} {perf['invalid_reason'] or perf.get('retried', '')} "
                    f"acc {s['accuracy']['accuracy_fixed']:.4f}/{s['accuracy']['accuracy_float']:.4f} "
                    f"({time.time() - t0:.0f} s)",
                    flush=True,
                )
    for s in summaries:
        s["target_kind"] = s["name"]  # table column: which target
    table = markdown_table(summaries)
    out = {
        "benchmark": "loadgen",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_end": list(os.getloadavg()),
        },
        "quick": args.quick,
        "wall_s": time.time() - t_start,
        "runs": summaries,
        "table": table,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "loadgen.json").write_text(json.dumps(out, indent=1, default=str))
    print(table)
    print(f"\nwrote {RESULTS / 'loadgen.json'} and LoadGen logs under {logs}")


if __name__ == "__main__":
    main()
