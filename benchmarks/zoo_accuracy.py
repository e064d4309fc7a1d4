"""Zoo models: float (onnxruntime) vs lightspeed fixed point, side by side on the same jets.

For every shipped zoo model, on the test split its model card reports on:
  * float      - the ONNX file in onnxruntime (the peer);
  * auto       - lightspeed.quantize(precision="auto"), calibrated on 5,000 training inputs,
                 run by the bit-exact emulator;
  * <16,6>     - one ap_fixed<16,6> type for everything (hls4ml's default precision);
plus the fraction of jets where the fixed-point classifier's argmax equals the float one.
The DeepSets tagger needs a jet file with constituents (``--constituents FILE``); without
it that row is skipped.

Writes benchmarks/results/zoo_accuracy.json and prints a Markdown table.

    python benchmarks/zoo_accuracy.py [--constituents jets_c30.h5]     # ~30 s on one core
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HEADLINE = {
    "jet_tagger": "accuracy",
    "deepsets": "accuracy",
    "autoencoder": "auc_t_vs_qcd",
    "facile": "rms_rel_error",
}
UNIFORM = "ap_fixed<16,6>"


def run_model(name: str, constituents: str | None) -> dict | None:
    import lightspeed
    from lightspeed import zoo
    from lightspeed.zoo._common import SPLIT_SEED, TEST_FRACTION, run_onnx

    mod = zoo.recipe(name)
    if name == "deepsets":
        if not constituents:
            return None
        from lightspeed.data import load_jets

        train, test = load_jets(constituents).split(TEST_FRACTION, SPLIT_SEED)
    else:
        train, test = zoo.default_split(name)
    path = zoo.model_path(name)
    x_test = mod.inputs(test)
    calib = mod.inputs(train)[:5000]
    graph = lightspeed.load(path)
    row: dict = {"model": name, "n_test": len(test), "metric": HEADLINE[name]}
    t0 = time.perf_counter()
    float_out = run_onnx(path, x_test)
    row["float"] = mod.evaluate(path, test)
    row["float_seconds"] = time.perf_counter() - t0
    for label, precision in (("auto", "auto"), ("uniform_16_6", UNIFORM)):
        t0 = time.perf_counter()
        q = lightspeed.quantize(graph, precision=precision, calibration=calib)
        fixed_out = q.predict(x_test)
        row[label] = mod.evaluate(path, test, q.predict)
        row[f"{label}_seconds"] = time.perf_counter() - t0
        row[f"{label}_input_type"] = str(next(iter(q.input_types.values())))
        if name in ("jet_tagger", "deepsets"):
            row[f"{label}_argmax_agreement"] = float(
                np.mean(fixed_out.argmax(1) == float_out.argmax(1))
            )
        else:
            row[f"{label}_max_abs_diff"] = float(np.max(np.abs(fixed_out - float_out)))
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | metric (test split) | float (onnxruntime) | lightspeed auto | "
        f"lightspeed {UNIFORM} | auto input type | argmax agreement auto / {UNIFORM} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metric"]
        agree = (
            f"{r['auto_argmax_agreement']:.4f} / {r['uniform_16_6_argmax_agreement']:.4f}"
            if "auto_argmax_agreement" in r
            else "n/a"
        )
        lines.append(
            f"| {r['model']} | {m} | {r['float'][m]:.4f} | {r['auto'][m]:.4f} | "
            f"{r['uniform_16_6'][m]:.4f} | `{r['auto_input_type']}` | {agree} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--constituents", help="jet file with 30 constituents (for deepsets)")
    args = ap.parse_args()
    rows = [r for n in HEADLINE if (r := run_model(n, args.constituents)) is not None]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "zoo_accuracy",
        "machine": platform.platform(),
        "uniform_precision": UNIFORM,
        "rows": rows,
    }
    (RESULTS / "zoo_accuracy.json").write_text(json.dumps(out, indent=1) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
