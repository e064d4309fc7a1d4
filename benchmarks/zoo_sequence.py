"""Zoo `sequence_rnn` (LSTM 3->8 over 16 steps): accuracy, emulator speed, firmware.

On the test split of the generated time series its model card reports on:
  * float vs auto fixed point (calibrated on 5,000 training windows, bit-exact emulator),
    and the argmax agreement between them;
  * emulator throughput (windows/s, batch = the whole test split) side by side with
    onnxruntime on the float model (one thread each);
  * Verilog at 200 MHz: latency in cycles, LUT/FF/DSP by lightspeed's estimate,
    Verilator bit-exact check on ``--vectors`` test windows (build time reported);
  * ``--yosys SECONDS``: Yosys synth_xilinx (xcvu9p) with that time limit.
``--table-size N`` (default: the auto 1024) gives every sigmoid/tanh table N entries.
``--steps K`` (< 16): the same trained network (the recipe retrains it bit-identically,
checked against the shipped ONNX) exported for windows of the last K steps, a design
about K/16 the size for when the full one is too slow to build in Verilator; every row
is then for K steps.

Writes benchmarks/results/zoo_sequence_rnn.json and prints a Markdown table.

    python benchmarks/zoo_sequence.py [--vectors 200] [--table-size 256] [--yosys 900]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _rate(fn, x, min_seconds: float = 2.0) -> float:
    fn(x)  # warm-up (JIT kernels, sessions)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=200, help="Verilator vectors (0: skip)")
    ap.add_argument("--table-size", type=int, default=0, help="sigmoid/tanh table entries")
    ap.add_argument("--steps", type=int, default=0, help="compile for the last K steps")
    ap.add_argument("--yosys", type=float, default=0.0, help="Yosys time limit in s (0: skip)")
    ap.add_argument("--out", default=str(RESULTS / "zoo_sequence_rnn.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("LIGHTSPEED_THREADS", "1")

    import lightspeed
    from lightspeed import firmware, zoo
    from lightspeed.zoo import sequence_rnn as rec
    from lightspeed.zoo._common import run_onnx

    train, test = zoo.default_split("sequence_rnn")
    path = zoo.model_path("sequence_rnn")
    tmpdir = tempfile.TemporaryDirectory()
    if args.steps:
        path, train, test = _fewer_steps(args.steps, Path(tmpdir.name))
    graph = lightspeed.load(path)
    config = None
    if args.table_size:
        tables = [n.name for n in graph.nodes if n.op in ("sigmoid", "tanh")]
        config = {"layers": {t: {"table_size": args.table_size} for t in tables}}
    t0 = time.perf_counter()
    q = lightspeed.quantize(graph, "auto", calibration=train.x[:5000], config=config)
    row: dict = {
        "model": "sequence_rnn",
        "steps": args.steps or rec.STEPS,
        "n_test": len(test),
        "table_size": args.table_size or 1024,
        "quantize_seconds": time.perf_counter() - t0,
        "float": rec.evaluate(path, test),
        "fixed": rec.evaluate(path, test, q.predict),
    }
    fixed_out, float_out = q.predict(test.x), run_onnx(path, test.x)
    row["argmax_agreement"] = float(np.mean(fixed_out.argmax(1) == float_out.argmax(1)))
    row["emulator_windows_per_s"] = _rate(q.predict, test.x)
    row["onnxruntime_windows_per_s"] = _rate(lambda x: run_onnx(path, x), test.x)

    with tempfile.TemporaryDirectory() as tmp:
        fw = firmware.generate(q, Path(tmp) / "fw", clock_period=5.0)
        est = firmware.estimate(q)
        row["clock_mhz"] = 200
        row["latency_cycles"] = fw.latency
        row["estimate"] = {"lut": round(est.lut), "ff": round(est.ff), "dsp": round(est.dsp)}
        if args.vectors:
            t0 = time.perf_counter()
            r = firmware.check(fw, test.x[: args.vectors], q=q)
            row["verilator"] = {
                "vectors": r["vectors"],
                "exact": bool(r["exact"]),
                "mismatched_values": r["mismatched_values"],
                "latency_cycles": r.get("latency"),
                "build_and_run_seconds": time.perf_counter() - t0,
            }
        if args.yosys:
            try:
                rep = firmware.synthesize(fw, part="xcvu9p", timeout=args.yosys)
                row["yosys"] = {"lut": rep.lut, "ff": rep.ff, "dsp": rep.dsp,
                                "seconds": rep.seconds}  # fmt: skip
            except Exception as exc:  # a timeout is a result to report, not a crash
                row["yosys"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}

    row["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                      "load_avg": os.getloadavg()}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=1) + "\n")
    print(markdown(row))
    return 0


def _fewer_steps(k: int, tmp: Path):
    """The shipped network exported for the last ``k`` steps, and the split cut to them."""
    from lightspeed import zoo
    from lightspeed.zoo import sequence_rnn as rec
    from lightspeed.zoo._common import export_onnx

    model, _ = rec.fit(rec.generate())
    full = export_onnx(model, rec.generate(4).x, tmp / "full.onnx", rec.INPUT, rec.OUTPUT)
    if full.read_bytes() != zoo.model_path("sequence_rnn").read_bytes():
        raise SystemExit("the recipe did not reproduce the shipped model; cannot cut it")
    train, test = zoo.default_split("sequence_rnn")
    cut = [rec.SequenceSample(s.x[:, -k:], s.labels) for s in (train, test)]
    path = export_onnx(model, cut[0].x, tmp / f"steps{k}.onnx", rec.INPUT, rec.OUTPUT)
    return path, cut[0], cut[1]


def markdown(r: dict) -> str:
    est, ver = r["estimate"], r.get("verilator", {})
    lines = [
        "| quantity | value |",
        "|---|---|",
        f"| compiled sequence length | {r['steps']} steps |",
        f"| sigmoid/tanh table entries | {r['table_size']} |",
        f"| accuracy float / auto fixed | {r['float']['accuracy']:.4f} / {r['fixed']['accuracy']:.4f} |",
        f"| AUC float / auto fixed | {r['float']['auc']:.4f} / {r['fixed']['auc']:.4f} |",
        f"| argmax agreement fixed vs float | {r['argmax_agreement']:.4f} |",
        f"| emulator throughput (1 thread) | {r['emulator_windows_per_s']:,.0f} windows/s |",
        f"| onnxruntime float (1 thread) | {r['onnxruntime_windows_per_s']:,.0f} windows/s |",
        f"| latency at 200 MHz | {r['latency_cycles']} cycles = {r['latency_cycles'] * 5} ns |",
        f"| estimate LUT / FF / DSP | {est['lut']:,} / {est['ff']:,} / {est['dsp']:,} |",
    ]
    if ver:
        lines.append(
            f"| Verilator vs emulator | {'bit-exact' if ver['exact'] else 'MISMATCH'} on "
            f"{ver['vectors']} windows ({ver['mismatched_values']} values differ; "
            f"build + run {ver['build_and_run_seconds']:.0f} s) |"
        )
    if "yosys" in r:
        y = r["yosys"]
        lines.append(
            f"| Yosys LUT / FF / DSP | {y['lut']:,} / {y['ff']:,} / {y['dsp']:,} ({y['seconds']:.0f} s) |"
            if "lut" in y
            else f"| Yosys | not finished: {y['error']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
