"""The JEDI-net-style zoo model (``jedinet``): accuracy, emulator speed, firmware cost.

On the model card's test split of a jet file with constituents:
  * float vs fixed (auto, and auto with 8-bit weights / 6 fractional bits) accuracy and
    argmax agreement;
  * emulator throughput (jets/s, one batch of 10,000);
  * latency (cycles at 200 MHz) and LUT/FF/DSP by the analytic estimate for the full
    16-constituent model;
  * the same architecture reduced to 4 constituents (12 edges, untrained weights, auto
    precision): Verilator RTL vs emulator on 1,000 jets (bit-exact?, latency, II), the
    estimate and, with ``--yosys``, Yosys ``synth_xilinx``.

Writes benchmarks/results/jedinet.json.

    python benchmarks/jedinet.py --constituents jets_c30.h5 [--yosys]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _est(q) -> dict:
    from lightspeed import firmware

    e = firmware.estimate(q)
    return {k: round(float(getattr(e, k))) for k in ("lut", "ff", "dsp", "latency")}


def main() -> None:
    import torch

    import lightspeed
    from lightspeed import firmware, zoo
    from lightspeed.data import load_jets
    from lightspeed.quantize import AutoOptions
    from lightspeed.zoo import jedinet

    ap = argparse.ArgumentParser()
    ap.add_argument("--constituents", required=True)
    ap.add_argument("--yosys", action="store_true")
    args = ap.parse_args()
    train, test = load_jets(args.constituents).split(0.25, 0)
    xtr, xte = jedinet.inputs(train), jedinet.inputs(test)
    g = lightspeed.load(str(zoo.model_path("jedinet")))
    out: dict = {"n_test": len(xte)}
    for label, opts in [("auto", AutoOptions()), ("auto_w8_f6", AutoOptions(8, 6))]:
        q = lightspeed.quantize(g, "auto", xtr[:3000], options=opts)
        pf, px = q.predict_float(xte), q.predict(xte)
        out[label] = {
            "float_accuracy": float(np.mean(pf.argmax(1) == test.labels)),
            "fixed_accuracy": float(np.mean(px.argmax(1) == test.labels)),
            "argmax_agreement": float(np.mean(pf.argmax(1) == px.argmax(1))),
            "estimate": _est(q),
        }
        if label == "auto":
            x = np.concatenate([xte] * (10000 // len(xte) + 1))[:10000]
            q.predict(x[:100])
            t = time.perf_counter()
            q.predict(x)
            out[label]["emulator_jets_per_s"] = len(x) / (time.perf_counter() - t)
    torch.manual_seed(0)
    x4 = jedinet.inputs(train, n_particles=4)[:2000]
    with tempfile.TemporaryDirectory() as tmp:
        p = jedinet.export(jedinet.build(n_particles=4), x4, Path(tmp) / "jedi4.onnx")
        q4 = lightspeed.quantize(lightspeed.load(str(p)), "auto", x4)
        fw = firmware.generate(q4, Path(tmp) / "fw")
        r = firmware.check(fw, x4[:1000], q=q4)
        red = {"estimate": _est(q4), "rtl_exact": bool(r["exact"]), "rtl_latency": r["latency"],
               "rtl_ii": r["ii"], "mismatched_values": int(r["mismatched_values"])}  # fmt: skip
        if args.yosys:
            rep = firmware.synthesize(fw, timeout=1800)
            red["yosys"] = {k: v for k, v in vars(rep).items() if isinstance(v, (int, float))}
        out["reduced_4_constituents"] = red
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "jedinet.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
