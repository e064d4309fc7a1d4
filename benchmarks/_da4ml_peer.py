"""Run by da4ml's own Python (not lightspeed's): one dense layer through da4ml 0.6.

    /work/peers/da4ml/bin/python benchmarks/_da4ml_peer.py CASE.npz OUTDIR

CASE.npz holds the integer weights ``w`` (fan_in, fan_out) and bias ``b`` at scale
2^-``wf``, the input type as da4ml's (k, i, f) in ``in_kif``, optionally the output
cast ``out_kif`` with ``out_modes`` ("WRAP TRN"), ``latency_cutoff`` (adder levels
per pipeline stage), for a network ``n_layers`` with ``w1``, ``b1``, ... and the
ReLU output type ``act_kif`` (SAT, RND), and test inputs ``x`` (floats on the input grid). Writes da4ml's
pipelined Verilog under OUTDIR/prj and OUTDIR/result.json (cost, stages, outputs of
da4ml's own bit-exact interpreter on ``x``). Uses only da4ml's public API.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from da4ml.codegen import RTLModel
    from da4ml.trace import FixedVariableArrayInput, comb_trace
    from da4ml.trace.ops import quantize, relu

    case = np.load(sys.argv[1])
    out = Path(sys.argv[2])
    w, b, wf = case["w"], case["b"], int(case["wf"])
    k, i, f = (int(v) for v in case["in_kif"])
    t0 = time.perf_counter()
    inp = FixedVariableArrayInput((w.shape[0],))
    x = quantize(inp, k, i, f)
    y = x @ (w.astype(np.float64) * 2.0**-wf) + b.astype(np.float64) * 2.0**-wf
    for n in range(1, int(case.get("n_layers", 1))):  # a network: ReLU cast, next layer
        ak, ai, af = (int(v) for v in case["act_kif"])
        y = quantize(relu(y), ak, ai, af, "SAT", "RND")
        wn, bn = case[f"w{n}"].astype(np.float64), case[f"b{n}"].astype(np.float64)
        y = y @ (wn * 2.0**-wf) + bn * 2.0**-wf
    if "out_kif" in case:
        ok, oi, of = (int(v) for v in case["out_kif"])
        overflow, rounding = str(case["out_modes"]).split()
        y = quantize(y, ok, oi, of, overflow, rounding)
    comb = comb_trace(inp, y)
    solve_s = time.perf_counter() - t0
    model = RTLModel(
        comb,
        "da4ml_dense",
        out / "prj",
        flavor="verilog",
        latency_cutoff=float(case["latency_cutoff"]),
        clock_period=5.0,
        print_latency=False,
    )
    model.write()
    stages = len(list((out / "prj" / "src").glob("da4ml_dense_stage*.v")))
    res = {
        "cost_estimate_lut": float(comb.cost),
        "stages": stages,
        "adder_depth": float(np.max(comb.latency)),
        "solve_seconds": solve_s,
        "seconds": time.perf_counter() - t0,
    }
    if "x" in case:
        res["y"] = comb.predict(case["x"].astype(np.float64), n_threads=1).tolist()
    (out / "result.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main()
