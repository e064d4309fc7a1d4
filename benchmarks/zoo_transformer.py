"""Zoo transformer tagger: float vs auto fixed point, emulator throughput, firmware cost.

On the test split of a jet file with constituents (the shipped sample has none):
  * float       - the shipped ONNX file in onnxruntime;
  * auto        - lightspeed.quantize(precision="auto"), calibrated on 2,000 training inputs,
                  run by the bit-exact emulator (accuracy and argmax agreement with float);
  * throughput  - emulator rows/s on the test inputs (one process, best of 3);
  * firmware    - latency in cycles at 200 MHz and LUT/FF/DSP by the analytic estimate;
                  with --yosys also Yosys synth_xilinx (can take many minutes);
  * --rtl N     - Verilator RTL simulation of N test jets against the emulator (bit-exact).

Writes benchmarks/results/zoo_transformer.json.

    lightspeed data jets --n 5000 --constituents 30 --seed 7 -o jets_c30.h5
    python benchmarks/zoo_transformer.py --constituents jets_c30.h5 [--rtl 200] [--yosys]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--constituents", required=True, help="jet file with >= 16 constituents")
    ap.add_argument("--rtl", type=int, default=0, help="simulate this many jets in Verilator")
    ap.add_argument("--yosys", action="store_true")
    args = ap.parse_args()

    import lightspeed
    from lightspeed import firmware, zoo
    from lightspeed.data import load_jets
    from lightspeed.zoo._common import SPLIT_SEED, TEST_FRACTION, run_onnx

    mod = zoo.recipe("transformer")
    train, test = load_jets(args.constituents).split(TEST_FRACTION, SPLIT_SEED)
    path = zoo.model_path("transformer")
    x = mod.inputs(test)
    float_out = run_onnx(path, x)
    t0 = time.perf_counter()
    q = lightspeed.quantize(lightspeed.load(path), "auto", mod.inputs(train)[:2000])
    quantize_s = time.perf_counter() - t0
    fixed = q.predict(x)
    best = min(_timed(q.predict, x) for _ in range(3))
    est = firmware.estimate(q, clock_period=5.0)
    # auto sizes the softmax exp table to the input lsb (16,384 entries here, read 512 times);
    # hls4ml's default 1,024 entries is the practical firmware choice
    small = {"layers": {n.name: {"exp_table_size": 1024} for n in q.graph.nodes
                        if n.op == "softmax"}}  # fmt: skip
    q_small = lightspeed.quantize(lightspeed.load(path), "auto", mod.inputs(train)[:2000],
                                  config=small)  # fmt: skip
    y_small = q_small.predict(x)
    est_small = firmware.estimate(q_small, clock_period=5.0)
    row = {
        "model": "transformer",
        "n_test": len(test),
        "float_accuracy": float(np.mean(float_out.argmax(1) == test.labels)),
        "fixed_accuracy": float(np.mean(fixed.argmax(1) == test.labels)),
        "argmax_agreement": float(np.mean(fixed.argmax(1) == float_out.argmax(1))),
        "max_abs_logit_error": float(np.abs(fixed - float_out).max()),
        "quantize_seconds": quantize_s,
        "emulator_rows_per_s": len(x) / best,
        "latency_cycles_200MHz": int(est.latency),
        "estimate": {"lut": round(est.lut), "ff": round(est.ff), "dsp": round(est.dsp)},
        "exp_table_1024": {
            "fixed_accuracy": float(np.mean(y_small.argmax(1) == test.labels)),
            "argmax_agreement": float(np.mean(y_small.argmax(1) == float_out.argmax(1))),
            "latency_cycles_200MHz": int(est_small.latency),
            "estimate": {
                "lut": round(est_small.lut),
                "ff": round(est_small.ff),
                "dsp": round(est_small.dsp),
            },
        },
        "machine": platform.processor() or platform.machine(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.rtl or args.yosys:
            fw = firmware.generate(q_small, Path(tmp) / "fw", clock_period=5.0, force=True)
        if args.rtl:
            r = firmware.check(fw, x[: args.rtl], q=q_small)
            row["rtl"] = {
                "n": args.rtl,
                "exact": bool(r["exact"]),
                "mismatches": len(r["mismatches"]),
            }
        if args.yosys:
            rep = firmware.synthesize(fw)
            row["yosys"] = {k: getattr(rep, k, None) for k in ("lut", "ff", "dsp")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zoo_transformer.json").write_text(json.dumps(row, indent=1) + "\n")
    print(json.dumps(row, indent=1))


def _timed(fn, x) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
