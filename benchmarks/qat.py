"""QAT and mixed-precision benchmark on the shipped jets: accuracy vs cost of the jet tagger.

Rows (all on the shipped Pythia8 jets, test split of the zoo model card):
  * float        the shipped ONNX (``zoo.model_path("jet_tagger")``), onnxruntime;
  * uniform 16   PTQ of the same weights to ap_fixed<16,6> everywhere (hls4ml's default);
  * PTQ auto     lightspeed's automatic PTQ (16-bit weights, 10 fractional bits);
  * QAT 6-bit    lightspeed.nn QAT: 6-bit weights and activations (16-bit input, as the
                 QKeras tagger), trained from the float weights;
  * searched     lightspeed.search: per-layer widths, greedy + QAT fine-tuning.

Inputs: the model card's standardisation (folded into the shipped first layer) is unfolded,
so every fixed-point model takes standardised features (the hls4ml convention: inputs
arrive scaled from upstream). The float model is the same function either way.

Cost: bit operations (``QuantizedModel.costs()``) and, where the firmware estimator is
present, its analytic LUT/DSP/FF estimate. Every QAT model is checked bit-exact: PyTorch
eval-mode outputs == emulator outputs on the whole test set.

    python benchmarks/qat.py                # ~1-2 min on 2 cores
    python benchmarks/qat.py --write-docs   # also writes docs/benchmarks/qat.md
    python benchmarks/qat.py --render --write-docs   # re-render from the saved JSON
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load_data() -> dict[str, Any]:
    from lightspeed.data import load_default_jets
    from lightspeed.zoo import _common as c

    sample = load_default_jets()
    train, test = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    xtr = train.features.astype(np.float32)
    mean, std = c.fit_scaler(xtr)
    n_val = len(xtr) // 5  # validation split for the search, taken from the training split
    xs = ((xtr - mean) / std).astype(np.float32)
    return {
        "mean": mean, "std": std, "x_raw_test": test.features.astype(np.float32), "y_test": test.labels,
        "x_test": ((test.features - mean) / std).astype(np.float32),
        "x_train": xs[n_val:], "y_train": train.labels[n_val:].astype(np.int64),
        "x_val": xs[:n_val], "y_val": train.labels[:n_val].astype(np.int64),
    }  # fmt: skip


def float_graph(mean: np.ndarray, std: np.ndarray):
    """The shipped tagger on standardised features (its folded scaler taken out again)."""
    import lightspeed
    from lightspeed import zoo

    return zoo.unfold_input_scaling(lightspeed.load(zoo.model_path("jet_tagger")), mean, std)


DSP_LUTS = 55  # LUT-equivalents per DSP (as lightspeed.search.DSP_LUTS)


def cost_of(q) -> dict[str, Any]:
    costs = q.costs().values()
    out: dict[str, Any] = {
        "bops": int(sum(c.bops for c in costs)),
        "mults": int(sum(c.mults for c in costs)),
        "weight_bits": int(sum(q.precision[n.name]["weight"].width * q.qparams[n.name]["weight"].size
                               for n in q.graph.nodes if "weight" in q.precision[n.name])),
    }  # fmt: skip
    try:
        from lightspeed.search import firmware_estimate

        est = firmware_estimate(q)
        get = est.get if isinstance(est, dict) else (lambda k: getattr(est, k, None))
        out["estimate"] = {k: get(k) for k in ("lut", "ff", "dsp", "latency") if get(k) is not None}
        out["lut_equivalents"] = round(float(get("lut")) + DSP_LUTS * float(get("dsp")))
    except Exception as exc:  # the estimator is optional here; report why it is missing
        out["estimate_error"] = (
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        )
    return out


def qat_row(
    name: str, model, d: dict[str, Any], seconds: float, extra: dict[str, Any],
    save: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    import torch

    from lightspeed.nn import to_quantized

    q = to_quantized(model, (16,), name=name)
    if save is not None:  # compiled dirs for `lightspeed firmware` / `synth`
        q.save(save / ("qat6" if name.startswith("QAT") else "searched"))
    with torch.no_grad():
        y_torch = model.eval()(torch.as_tensor(d["x_test"])).numpy()
    y_emu = q.predict(d["x_test"].astype(np.float64))
    row = {
        "name": name,
        "accuracy": float(np.mean(y_emu.argmax(1) == d["y_test"])),
        "bit_exact_vs_pytorch": bool(np.array_equal(y_torch, y_emu)),
        "train_seconds": round(seconds, 1),
        "types": {
            n.name: {r: str(t) for r, t in q.precision[n.name].items()} for n in q.graph.nodes
        },
        "input_type": str(next(iter(q.input_types.values()))),
        **cost_of(q),
        **extra,
    }
    return row


def run(quick: bool = False, cost: str = "lut", save: Path | None = None) -> dict[str, Any]:
    import torch

    import lightspeed
    from lightspeed import nn as lnn
    from lightspeed import zoo
    from lightspeed.search import SearchConfig, search
    from lightspeed.zoo import _common as c

    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = load_data()
    rows = []

    logits = c.run_onnx(zoo.model_path("jet_tagger"), d["x_raw_test"])
    acc_float = float(np.mean(logits.argmax(1) == d["y_test"]))
    rows.append({"name": "float (shipped ONNX, onnxruntime)", "accuracy": acc_float})

    g = float_graph(d["mean"], d["std"])
    for name, prec, opts in (
        ("uniform ap_fixed<16,6> (PTQ)", "ap_fixed<16,6>", None),
        ("PTQ auto (lightspeed default)", "auto", None),
    ):
        q = lightspeed.quantize(
            g, precision=prec, calibration=d["x_train"][:4096].astype(np.float64), options=opts
        )
        y = q.predict(d["x_test"].astype(np.float64))
        rows.append(
            {"name": name, "accuracy": float(np.mean(y.argmax(1) == d["y_test"])), **cost_of(q)}
        )

    f = lnn.from_graph(g)
    epochs = 2 if quick else 6
    t0 = time.perf_counter()
    m6 = lnn.convert(f, d["x_train"][:4096], weight_bits=6, act_bits=6, input_bits=16)
    lnn.fit(m6, d["x_train"], d["y_train"], epochs=epochs, lr=1e-3)
    rows.append(qat_row("QAT 6-bit (weights, activations; 16-bit input)", m6, d, time.perf_counter() - t0,
                        {"epochs": epochs}, save))  # fmt: skip

    cfg = SearchConfig(
        target=0.99,
        finetune_epochs=2,
        init_epochs=2 if quick else 3,
        final_epochs=1 if quick else 3,
        max_rounds=10 if quick else 60,
    )
    res = search(
        f, d["x_train"], d["y_train"], d["x_val"], d["y_val"], (16,), cfg, cost=cost, progress=print
    )
    rows.append(
        qat_row(
            "searched mixed precision", res.model, d, res.seconds, {"search": res.summary()}, save
        )
    )

    base = next(r for r in rows if r["name"].startswith("uniform"))
    for r in rows:
        r["accuracy_vs_float"] = r["accuracy"] / acc_float
        if "bops" in r:
            r["bops_reduction_vs_uniform16"] = base["bops"] / r["bops"]
            if r.get("lut_equivalents") and base.get("lut_equivalents"):
                r["lut_equivalents_reduction_vs_uniform16"] = (
                    base["lut_equivalents"] / r["lut_equivalents"]
                )
    return {
        "benchmark": "qat",
        "data": "shipped Pythia8 jets (lightspeed.data.load_default_jets), zoo test split",
        "n_test": len(d["y_test"]),
        "search_config": cfg.__dict__,
        "search_cost": cost,
        "lut_equivalents": f"LUT + {DSP_LUTS} x DSP from lightspeed.firmware.estimate (analytic)",
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "rows": rows,
    }


def _fmt(v: Any, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def table(res: dict[str, Any]) -> str:
    lines = [
        "| model | accuracy | vs float | BOPs | BOPs vs 16-bit | est. LUT | est. DSP "
        "| LUT-eq. vs 16-bit | latency (cycles) | bit-exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    exact = {True: "yes", False: "NO", None: "-"}
    for r in res["rows"]:
        est = r.get("estimate", {})
        cells = [
            r["name"],
            _fmt(r["accuracy"], ".4f"),
            _fmt(r["accuracy_vs_float"], ".3f"),
            _fmt(r.get("bops"), ","),
            _fmt(r.get("bops_reduction_vs_uniform16"), ".1f") + ("x" if "bops" in r else ""),
            _fmt(est.get("lut"), ",.0f"),
            _fmt(est.get("dsp"), ".0f"),
            _fmt(r.get("lut_equivalents_reduction_vs_uniform16"), ".1f")
            + ("x" if "lut_equivalents_reduction_vs_uniform16" in r else ""),
            _fmt(est.get("latency")),
            exact[r.get("bit_exact_vs_pytorch")],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def doc(res: dict[str, Any], md: str) -> str:
    """The docs/benchmarks/qat.md section: setup, table, search summary, references."""
    srch = next(r for r in res["rows"] if r["name"].startswith("searched"))
    s = srch["search"]
    widths = ", ".join(f"{k} {v}" for k, v in s["widths"].items())
    return f"""## QAT and mixed precision (jet tagger)

`python benchmarks/qat.py --write-docs` -- {res["data"]}, {res["n_test"]:,} test jets; the
16->64->32->32->5 tagger. Fixed-point models take standardised features (the model card's
scaler, unfolded from the shipped first layer). Cost: bit operations from
`QuantizedModel.costs()` and the firmware's analytic estimate (`lightspeed.firmware.estimate`,
LUT/DSP, latency at 200 MHz); LUT-equivalents = LUT + 55 DSP. "bit-exact" = PyTorch eval
output == emulator output on every test jet.

{md}

Searched widths (greedy + QAT fine-tuning, LUT-equivalent cost, goal 99% of float accuracy on
a 3,750-jet validation split): {widths}. Search cost: {s["evaluations"]} evaluations,
{s["epochs"]} training epochs, {s["seconds"]:.0f} s on one shared core. Training runs are a few
epochs each (QAT 6-bit: {next(r for r in res["rows"] if r["name"].startswith("QAT"))["epochs"]} epochs).

Published references (different data and tools; compare the shape, not the digits): the QKeras
6-bit jet tagger reached 75.6% at 40 ns and 22 DSPs on a VU9P (hls4ml/QKeras paper). The
estimate here is Yosys-calibrated and counts LUT-mapped constant multipliers, so DSP counts
are not comparable with Vivado's.
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="fewer epochs and search rounds (smoke run)"
    )
    ap.add_argument(
        "--cost",
        default="lut",
        choices=["lut", "bops"],
        help="search cost: firmware LUT-equivalents (default) or bit operations",
    )
    ap.add_argument("--write-docs", action="store_true", help="also write docs/benchmarks/qat.md")
    ap.add_argument("--save", type=Path, help="write the QAT and searched compiled models here")
    ap.add_argument(
        "--render",
        action="store_true",
        help="re-render the table/doc from benchmarks/results/qat.json without running",
    )
    args = ap.parse_args()
    if args.render:
        res = json.loads((RESULTS / "qat.json").read_text())
    else:
        res = run(quick=args.quick, cost=args.cost, save=args.save)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "qat.json").write_text(json.dumps(res, indent=1) + "\n")
    md = table(res)
    print(md)
    if args.write_docs:
        out = ROOT / "docs" / "benchmarks" / "qat.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(doc(res, md))


if __name__ == "__main__":
    main()
