"""BDT benchmark: lightspeed tree ensembles vs conifer 1.11 (cpp backend), side by side in one run.

On the shipped jets (``lightspeed.data.load_default_jets()``, the zoo's 75/25
split), next to the zoo jet-tagging MLP:

* a scikit-learn GradientBoostingClassifier (20 rounds x 5 classes = 100 trees
  of depth 3, the conifer paper's jet BDT shape), plus an XGBoost model of the
  same shape;
* accuracy: float model, lightspeed auto precision, lightspeed and conifer at
  one uniform type (``ap_fixed<22,12>``: the jets' mass and multiplicity
  features need 12 integer bits; conifer's default ``ap_fixed<18,8>`` wraps
  them);
* bit-exactness: lightspeed emulation vs conifer's compiled C++ emulation on
  the same trees and types (every score of every test jet compared);
* semantics: fraction of tree decisions that agree with the float model on
  the quantized inputs (lightspeed's threshold rule makes this 1 by
  construction; conifer truncates XGBoost's ``x < t`` thresholds, see
  docs/trees.md);
* speed: lightspeed ``q.predict`` vs conifer ``decision_function`` (wall and
  CPU time, same process);
* firmware: lightspeed Verilog latency at 200 MHz, Verilator bit-exact check,
  analytic estimate and Yosys ``synth_xilinx`` LUT/FF/DSP.

Needs ``pip install conifer==1.11 xgboost``, ``apt-get install nlohmann-json3-dev``;
``XILINX_AP_INCLUDE`` defaults to hls4ml's ap_types. Writes
``benchmarks/results/bdt.json`` and prints a Markdown table.

    python benchmarks/bdt_vs_conifer.py            # ~5-10 min on 2 busy cores
    python benchmarks/bdt_vs_conifer.py --quick    # smaller ensembles, no synthesis
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
UNIFORM = "ap_fixed<22,12>"


def _ap_types() -> str:
    import hls4ml

    return str(Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types")


def _timed(fn, repeats: int = 1) -> tuple[Any, float, float]:
    """(result, best wall seconds, CPU seconds of that run)."""
    best_wall, best_cpu, out = np.inf, np.inf, None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        dw, dc = time.perf_counter() - w, time.process_time() - c
        if dw < best_wall:
            best_wall, best_cpu = dw, dc
    return out, best_wall, best_cpu


def _conifer_model(model, kind: str, precision: str, outdir: Path):
    import conifer

    cfg = conifer.backends.cpp.auto_config()
    cfg["OutputDir"] = str(outdir)
    cfg["Precision"] = precision
    note = None
    if kind == "sklearn":
        cm = conifer.converters.convert_from_sklearn(model, cfg)
    else:
        from conifer.converters import xgboost as cx
        from conifer.model import make_model

        from lightspeed.frontends.trees import load_trees

        ens = cx.convert(model)
        if not np.all(np.isfinite(ens["init_predict"])):
            # conifer 1.11 takes the logit of XGBoost 3's multi-class base_score, which already is a
            # margin (NaN for negative values); give it the margins XGBoost itself adds
            ens["init_predict"] = load_trees(model).nodes[0].params["base"].tolist()
            note = (
                "conifer init_predict replaced by XGBoost's base margins (conifer 1.11 gives NaN)"
            )
        cm = make_model(ens, cfg)
    t0 = time.perf_counter()
    cm.compile()
    return cm, time.perf_counter() - t0, note


def _conifer_rule(g, type_str: str):
    """The graph with XGBoost's ``x < t`` replaced by conifer's ``x < floor_T(t)``."""
    from lightspeed.fixed import parse_type

    frac = parse_type(type_str).frac
    g = g.copy()
    node = g.nodes[0]
    t = node.params["threshold"]
    node.params["threshold"] = np.floor(np.ldexp(t, frac)) * 2.0**-frac - 2.0 ** -(frac + 1)
    node.attrs["split"] = "le"
    return g


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(scores).argmax(axis=1) == labels))


def _nn_row(test) -> dict[str, Any]:
    import lightspeed
    from lightspeed.zoo import model_path

    g = lightspeed.load(model_path("jet_tagger"))
    q = lightspeed.quantize(g, calibration=test.features[:2000])
    return {
        "model": "zoo jet_tagger MLP 16-64-32-32-5",
        "accuracy_float": _accuracy(q.predict_float(test.features), test.labels),
        "accuracy_auto": _accuracy(q.predict(test.features), test.labels),
    }


def _bdt_case(name, model, kind, train, test, args, workdir: Path) -> dict[str, Any]:
    import lightspeed
    from lightspeed import firmware
    from lightspeed.fixed import quantize_float, to_float
    from lightspeed.frontends.trees import load_trees
    from lightspeed.ops.trees import decision_agreement, fixed_leaves, float_leaves

    x_tr, x_te, y_te = train.features, test.features, test.labels
    g = load_trees(model)
    e_float = lightspeed.quantize(g, calibration=x_tr)
    row: dict[str, Any] = {"model": name, "trees": int(g.nodes[0].params["roots"].size)}
    row["accuracy_float"] = _accuracy(e_float.predict_float(x_te), y_te)
    row["accuracy_auto"] = _accuracy(e_float.predict(x_te), y_te)
    row["auto_types"] = {r: str(t) for r, t in e_float.precision["trees"].items()}
    row["input_type_auto"] = str(e_float.input_types["x"])
    row["agreement_auto_vs_float"] = decision_agreement(e_float, x_te)

    qu = lightspeed.quantize(g, precision=UNIFORM, calibration=x_tr)
    row["accuracy_uniform"] = _accuracy(qu.predict(x_te), y_te)
    # lightspeed decisions vs the float model on the same quantized inputs (exact by construction)
    node = qu.graph.nodes[0]
    xq = to_float(quantize_float(x_te, qu.input_types["x"]), qu.input_types["x"])
    lx = fixed_leaves(
        node, qu.run({"x": x_te}, trace=True)["x"], qu.precision["trees"], qu.qparams["trees"]
    )
    row["lightspeed_decisions_equal_float_on_quantized_inputs"] = float(
        np.mean(lx == float_leaves(node, xq))
    )

    # conifer, same trees, same uniform type
    try:
        cm, csecs, note = _conifer_model(model, kind, UNIFORM, workdir / f"conifer_{name}")
        if note:
            row["conifer_workaround"] = note
    except Exception as exc:  # conifer missing or its build failed: report, keep going
        row["conifer_error"] = f"{type(exc).__name__}: {exc}"[:400]
        cm = None
    ys = qu.predict(x_te)
    if cm is not None:
        row["conifer_compile_s"] = csecs
        n_c = min(len(x_te), args.conifer_rows)
        x_c = x_te[:n_c].astype(np.float64)
        yc, cw, cc = _timed(lambda: np.asarray(cm.decision_function(x_c)), repeats=args.repeats)
        yc = yc.reshape(n_c, -1)
        row["accuracy_conifer"] = _accuracy(yc, y_te[:n_c]) if yc.shape[1] > 1 else None
        diff = yc != ys[:n_c]
        row["conifer_rows"] = n_c
        row["scores_compared"] = int(diff.size)
        row["scores_differing"] = int(diff.sum())
        row["jets_differing"] = int(diff.any(axis=1).sum())
        row["bit_exact_vs_conifer"] = bool(not diff.any())
        row["argmax_agreement_vs_conifer"] = float(np.mean(yc.argmax(1) == ys[:n_c].argmax(1)))
        if g.nodes[0].attrs["split"] == "lt":
            # conifer compares x < (T)t with (T) truncating; give lightspeed that rule to show it
            # is the only difference: thresholds floor(t) - lsb/2 with "x <= t" land on floor(t) - lsb
            qc = lightspeed.quantize(_conifer_rule(g, UNIFORM), precision=UNIFORM, calibration=x_tr)
            row["scores_differing_with_conifer_rule"] = int((qc.predict(x_c) != yc).sum())
        row["conifer_rate_per_s"] = n_c / cw
        row["conifer_cpu_rate_per_s"] = n_c / max(cc, 1e-9)
    # lightspeed emulation speed (uniform type, the same work as conifer), best of 3 on many rows
    big = np.tile(x_te, (max(1, args.speed_rows // len(x_te)), 1))
    _, lw, lc = _timed(lambda: qu.predict(big), repeats=max(3, args.repeats))
    row["lightspeed_rows"] = len(big)
    row["lightspeed_rate_per_s"] = len(big) / lw
    row["lightspeed_cpu_rate_per_s"] = len(big) / max(lc, 1e-9)
    if cm is not None:
        row["speedup_wall"] = row["lightspeed_rate_per_s"] / row["conifer_rate_per_s"]
        row["speedup_cpu"] = row["lightspeed_cpu_rate_per_s"] / row["conifer_cpu_rate_per_s"]

    # firmware for the auto-precision model
    fw_row: dict[str, Any] = {}
    try:
        fw = firmware.generate(e_float, workdir / f"fw_{name}", clock_period=5.0)
        fw_row["latency_cycles_200MHz"] = fw.latency
        fw_row["latency_ns"] = fw.latency * 5.0
        fw_row["estimate"] = fw.manifest.get("estimate")
        chk = firmware.check(fw, x_te, q=e_float)
        fw_row["rtl_bit_exact"] = bool(chk["exact"])
        fw_row["rtl_vectors"] = chk["vectors"]
        fw_row["rtl_latency"] = chk["latency"]
        fw_row["rtl_ii"] = chk["ii"]
        if not args.quick and args.synth and name in args.synth_models:
            rep = firmware.synthesize(fw, part="xcvu9p", timeout=args.synth_timeout)
            fw_row["yosys"] = {
                k: rep.to_dict()[k] for k in ("lut", "ff", "dsp", "carry", "muxf", "seconds")
            }
            fw_row["yosys"]["lut_percent_vu9p"] = rep.utilisation.get("lut")
    except Exception as exc:
        fw_row["error"] = f"{type(exc).__name__}: {exc}"[:400]
    row["firmware"] = fw_row
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 rounds instead of 20, no synthesis")
    ap.add_argument(
        "--rounds", type=int, default=20, help="boosting rounds (trees = rounds x 5 classes)"
    )
    ap.add_argument("--depth", type=int, default=3, help="maximum tree depth")
    ap.add_argument(
        "--conifer-rows", type=int, default=100_000, help="most test jets run through conifer"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    ap.add_argument("--speed-rows", type=int, default=100_000, help="rows for lightspeed's timing")
    ap.add_argument("--no-synth", dest="synth", action="store_false", help="skip Yosys synthesis")
    ap.add_argument("--synth-timeout", type=float, default=1800.0, help="seconds allowed for Yosys")
    ap.add_argument(
        "--synth-models", nargs="*", default=["sklearn_gb"], help="models to synthesize with Yosys"
    )
    ap.add_argument(
        "--no-xgboost", dest="xgboost", action="store_false", help="skip the XGBoost model"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "bdt.json", help="JSON result file")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("XILINX_AP_INCLUDE", _ap_types())

    from sklearn.ensemble import GradientBoostingClassifier

    from lightspeed.data import load_default_jets
    from lightspeed.zoo import _common as zc

    rounds = 5 if args.quick else args.rounds
    sample = load_default_jets()
    train, test = sample.split(zc.TEST_FRACTION, zc.SPLIT_SEED)
    result: dict[str, Any] = {
        "benchmark": "bdt_vs_conifer",
        "host": {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
        },
        "data": {
            "name": "lightspeed default jets",
            "train": len(train.labels),
            "test": len(test.labels),
            "features": int(train.features.shape[1]),
            "classes": list(sample.class_names),
        },
        "config": {"rounds": rounds, "depth": args.depth, "uniform_type": UNIFORM},
        "nn": _nn_row(test),
        "bdt": [],
    }
    versions = {}
    for mod in ("sklearn", "xgboost", "conifer", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    result["versions"] = versions

    models = []
    t0 = time.perf_counter()
    gb = GradientBoostingClassifier(n_estimators=rounds, max_depth=args.depth, random_state=0)
    gb.fit(train.features, train.labels)
    models.append(("sklearn_gb", gb, "sklearn", time.perf_counter() - t0))
    if args.xgboost:
        try:
            import xgboost as xgb

            t0 = time.perf_counter()
            xm = xgb.XGBClassifier(
                n_estimators=rounds, max_depth=args.depth, random_state=0, n_jobs=1
            )
            xm.fit(train.features, train.labels)
            models.append(("xgboost", xm, "xgboost", time.perf_counter() - t0))
        except ImportError:
            pass
    with tempfile.TemporaryDirectory(prefix="bdt-bench-") as td:
        for name, model, kind, train_s in models:
            print(f"[bdt] {name}: {rounds} rounds x 5 classes, depth {args.depth}", file=sys.stderr)
            row = _bdt_case(name, model, kind, train, test, args, Path(td))
            row["train_seconds"] = train_s
            result["bdt"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    nn = r["nn"]
    lines = [
        f"Jets: {r['data']['train']} train / {r['data']['test']} test, 16 features, 5 classes; "
        f"BDT = {r['config']['rounds']} rounds x 5 classes, depth {r['config']['depth']}; "
        f"uniform type {r['config']['uniform_type']}.",
        "",
        "| model | float acc | lightspeed auto acc | uniform-type acc (lightspeed) | conifer acc | "
        "bit-exact vs conifer | lightspeed rows/s | conifer rows/s | speed-up (wall / CPU) | "
        "latency @200 MHz | Yosys LUT / FF / DSP |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {nn['model']} | {nn['accuracy_float']:.4f} | {nn['accuracy_auto']:.4f} | "
        "- | - | - | - | - | - | - | - |",
    ]
    for b in r["bdt"]:
        fw = b.get("firmware", {})
        ys = fw.get("yosys") or {}
        syn = f"{ys['lut']} / {ys['ff']} / {ys['dsp']}" if ys else "-"
        lat = (
            (
                f"{fw['latency_cycles_200MHz']} cycles ({fw['latency_ns']:.0f} ns), RTL exact: "
                f"{fw.get('rtl_bit_exact')}"
            )
            if "latency_cycles_200MHz" in fw
            else fw.get("error", "-")
        )
        exact = "-"
        if "bit_exact_vs_conifer" in b:
            exact = (
                f"{'yes' if b['bit_exact_vs_conifer'] else 'no'} "
                f"({b['scores_differing']}/{b['scores_compared']} scores differ)"
            )
        conifer_acc = (
            f"{b['accuracy_conifer']:.4f}" if b.get("accuracy_conifer") is not None else "-"
        )
        sp = f"{b['speedup_wall']:.0f}x / {b['speedup_cpu']:.0f}x" if "speedup_wall" in b else "-"
        conifer_rate = f"{b['conifer_rate_per_s']:,.0f}" if "conifer_rate_per_s" in b else "-"
        lines.append(
            f"| {b['model']} ({b['trees']} trees) | {b['accuracy_float']:.4f} | {b['accuracy_auto']:.4f} | "
            f"{b['accuracy_uniform']:.4f} | {conifer_acc} | {exact} | {b['lightspeed_rate_per_s']:,.0f} | "
            f"{conifer_rate} | {sp} | {lat} | {syn} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
