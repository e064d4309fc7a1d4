"""Firmware benchmark: the 16->64->32->32->5 jet tagger as Verilog, simulated and synthesized.

For (a) uniform ap_fixed<16,6> and (b) 6-bit weights with auto activations it reports
accuracy (fixed vs float), latency in cycles at 200 MHz and II from the Verilator
simulation (bit-exact check on test jets), the analytic estimate, Yosys
``synth_xilinx -family xcup`` LUT/FF/DSP/CARRY for an xcvu9p and the estimate's error,
next to the published QKeras + hls4ml 6-bit jet tagger on a VU9P (Vivado).

    python benchmarks/firmware.py                     # both models, Yosys with --timeout
    python benchmarks/firmware.py --calibrate         # small layers: estimate vs Yosys
    python benchmarks/firmware.py --yosys-timeout 0   # skip Yosys on the full models
    python benchmarks/firmware.py --da4ml             # per layer vs da4ml 0.6 (firmware_da4ml.py)
    python benchmarks/firmware.py --da4ml --cases exact --layers n0_Gemm --yosys-timeout 600
    python benchmarks/firmware.py --da4ml --cases exact-network,exact-pruned-network

Writes benchmarks/results/firmware.json and docs/benchmarks/firmware.md, prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks" / "firmware.md"
PART = "xcvu9p"
CLOCK_NS = 5.0
CASES = ("exact", "exact-pruned", "hls4ml", "hls4ml-pruned")
REFERENCE = {  # QKeras + hls4ml 6-bit jet tagger on a VU9P (Coelho et al., Nat. Mach. Intell. 2021)
    "model": "published QKeras+hls4ml 6-bit (Vivado, VU9P)", "latency_ns": 40, "latency_cycles": 8,
    "dsp": 22, "lut": 12000, "accuracy": 0.756,
}  # fmt: skip


def load_data() -> dict[str, Any]:
    from lightspeed.data import load_default_jets
    from lightspeed.zoo import _common as c

    sample = load_default_jets()
    train, test = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    mean, std = c.fit_scaler(train.features.astype(np.float32))
    return {
        "mean": mean, "std": std, "y_test": test.labels,
        "x_train": ((train.features - mean) / std), "x_test": ((test.features - mean) / std),
    }  # fmt: skip


def jet_graph(mean: np.ndarray, std: np.ndarray):
    """The shipped tagger on standardised features (its folded scaler taken out again)."""
    import lightspeed
    from lightspeed import zoo

    return zoo.unfold_input_scaling(lightspeed.load(zoo.model_path("jet_tagger")), mean, std)


def models(data: dict[str, Any]) -> dict[str, Any]:
    import lightspeed
    from lightspeed.quantize import AutoOptions

    g = jet_graph(data["mean"], data["std"])
    cal = data["x_train"][:2000]
    return {
        "6-bit weights, auto activations": lightspeed.quantize(
            g, "auto", cal, options=AutoOptions(weight_bits=6)
        ),
        "ap_fixed<16,6>": lightspeed.quantize(g, "ap_fixed<16,6>", cal),
    }


def run_model(
    name: str,
    q,
    data: dict[str, Any],
    workdir: Path,
    yosys_timeout: float,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from lightspeed import firmware
    from lightspeed.errors import LightspeedError

    x, y = data["x_test"], data["y_test"]
    fixed, flt = q.predict(x), q.predict_float(x)
    row: dict[str, Any] = {
        "model": name,
        "accuracy_fixed": float(np.mean(fixed.argmax(1) == y)),
        "accuracy_float": float(np.mean(flt.argmax(1) == y)),
    }
    t0 = time.perf_counter()
    fw = firmware.generate(
        q, workdir / name.split(",")[0].replace("<", "").replace(">", "").replace(" ", "_")
    )
    row["generate_seconds"] = time.perf_counter() - t0
    row["rtl_sha"] = fw.manifest["files"]["rtl"]["sha"]
    row["latency_cycles"] = fw.latency
    row["latency_ns"] = fw.latency * fw.clock_period
    est = fw.manifest["estimate"]
    row["estimate"] = {k: est[k] for k in ("lut", "ff", "dsp", "carry")}
    try:
        r = firmware.check(fw, x[:10_000], q=q)
        row["sim"] = {
            "vectors": r["vectors"],
            "exact": r["exact"],
            "latency_cycles": r["latency"],
            "ii": r["ii"],
            "build_seconds": r["build_seconds"],
            "run_seconds": r["run_seconds"],
        }
    except LightspeedError as exc:
        row["sim"] = {"error": str(exc)}
    if previous and previous.get("rtl_sha") == row["rtl_sha"] and "yosys" in previous:
        row["yosys"] = previous["yosys"]  # same Verilog: reuse the earlier run (also a timeout)
    elif yosys_timeout > 0:
        try:
            rep = firmware.synthesize(fw, part=PART, timeout=yosys_timeout)
            row["yosys"] = {
                k: getattr(rep, k) for k in ("lut", "ff", "dsp", "carry", "srl", "seconds")
            }
            row["yosys"]["utilisation_lut_pct"] = rep.utilisation["lut"]
        except LightspeedError as exc:
            row["yosys"] = {"error": str(exc).splitlines()[0]}
    if "lut" in row.get("yosys", {}):
        row["estimate_error"] = {
            k: (est[k] - row["yosys"][k]) / row["yosys"][k] if row["yosys"][k] else None
            for k in ("lut", "ff", "dsp")
        }
    return row


# ---------------------------------------------------------------------------
# calibration: the estimate against Yosys on small layers


def calibration_designs():
    import lightspeed
    from lightspeed.ir import Graph, Node, infer_shapes
    from lightspeed.quantize import AutoOptions

    rng = np.random.default_rng(7)

    def mlp(sizes, act="relu"):
        nodes, prev = [], "x"
        for i in range(len(sizes) - 1):
            w = rng.normal(0, 1 / np.sqrt(sizes[i]), (sizes[i], sizes[i + 1]))
            nodes.append(
                Node(
                    f"fc{i}",
                    "dense",
                    [prev],
                    [f"h{i}"],
                    {},
                    {"weight": w, "bias": rng.normal(0, 0.1, sizes[i + 1])},
                )
            )
            prev = f"h{i}"
            if act and i < len(sizes) - 2:
                nodes.append(
                    Node(
                        f"a{i}",
                        act,
                        [prev],
                        [f"a{i}"],
                        {"table_size": 256} if act in ("tanh", "sigmoid") else {},
                    )
                )
                prev = f"a{i}"
        return infer_shapes(Graph("cal", {"x": (sizes[0],)}, [prev], nodes))

    cal = {"x": rng.normal(0, 1, (500, 16))}
    out = []
    for sizes in [(16, 8), (8, 8, 4)]:
        g = mlp(sizes)
        c = {"x": cal["x"][:, : sizes[0]]}
        out.append(
            (f"dense {sizes} ap_fixed<8,3>", lightspeed.quantize(g, "ap_fixed<8,3>", c), "auto")
        )
        out.append(
            (
                f"dense {sizes} ap_fixed<16,6> dsp",
                lightspeed.quantize(g, "ap_fixed<16,6>", c),
                "dsp",
            )
        )
        out.append(
            (
                f"dense {sizes} ap_fixed<16,6> lut",
                lightspeed.quantize(g, "ap_fixed<16,6>", c),
                "lut",
            )
        )
        out.append(
            (
                f"dense {sizes} w6 auto",
                lightspeed.quantize(g, "auto", c, options=AutoOptions(weight_bits=6)),
                "auto",
            )
        )
        out.append(
            (f"dense {sizes} RND,SAT", lightspeed.quantize(g, "ap_fixed<10,4,RND,SAT>", c), "auto")
        )
    g = mlp((4, 4, 4), act="tanh")
    out.append(
        (
            "dense 4-4-4 tanh ROM",
            lightspeed.quantize(g, "ap_fixed<12,4>", {"x": cal["x"][:, :4]}),
            "auto",
        )
    )
    return out


def calibrate(workdir: Path, timeout: float) -> dict[str, Any]:
    from lightspeed import firmware
    from lightspeed.errors import LightspeedError

    rows = []
    for name, q, mult in calibration_designs():
        fw = firmware.generate(q, workdir / f"cal{len(rows)}", multipliers=mult)
        est = fw.manifest["estimate"]
        try:
            rep = firmware.synthesize(fw, part=PART, timeout=timeout)
        except LightspeedError as exc:
            rows.append({"design": name, "error": str(exc).splitlines()[0]})
            continue
        rows.append({
            "design": name, "estimate": {k: est[k] for k in ("lut", "ff", "dsp", "carry")},
            "features": est["features"],
            "yosys": {"lut": rep.lut + rep.srl, "ff": rep.ff, "dsp": rep.dsp, "carry": rep.carry},
            "seconds": rep.seconds,
        })  # fmt: skip
        print(f"  {name}: estimate {rows[-1]['estimate']} yosys {rows[-1]['yosys']}", flush=True)
    errs = {}
    for k in ("lut", "ff", "dsp"):
        e = [
            abs(r["estimate"][k] - r["yosys"][k]) / max(r["yosys"][k], 1)
            for r in rows
            if "yosys" in r
        ]
        errs[k] = {
            "mean_abs_rel_error": float(np.mean(e)) if e else None,
            "max_abs_rel_error": float(np.max(e)) if e else None,
        }
    return {"rows": rows, "errors": errs}


def fit(cal: dict[str, Any]) -> dict[str, float]:
    """Non-negative least squares of Yosys LUTs (incl. SRLs) on the estimate's features.

    Minimises relative error (rows scaled by 1/Yosys LUT), so small and large layers count alike.
    """
    from scipy.optimize import nnls

    from lightspeed import firmware
    from lightspeed.firmware.estimate import COEF, estimate_design
    from lightspeed.firmware.verilog import build_design

    # few calibration layers: fit the dominant terms, keep the priors of the rare ones
    keys = ["add_bits", "exact_tree_bits", "sat_bits", "rom_bits64", "dsp_out_bits"]
    fixed = {k: v for k, v in COEF.items() if k not in keys}
    designs = {name: (q, mult) for name, q, mult in calibration_designs()}
    a, b = [], []
    for r in cal["rows"]:
        if "yosys" not in r:
            continue
        q, mult = designs[r["design"]]
        f = estimate_design(build_design(q, firmware.FirmwareOptions(multipliers=mult))).features
        y = float(r["yosys"]["lut"])
        a.append([f.get(k, 0.0) / y for k in keys])
        b.append(1.0 - sum(c * f.get(k, 0.0) for k, c in fixed.items()) / y)
    coef, _ = nnls(np.array(a), np.array(b))
    return {**{k: round(float(c), 3) for k, c in zip(keys, coef, strict=True)}, **fixed}


# ---------------------------------------------------------------------------
# report


def _n(v: Any) -> str:
    return f"{v:,.0f}" if isinstance(v, int | float) else str(v)


def table(res: dict[str, Any]) -> str:
    lines = [
        f"| model | accuracy (fixed / float) | latency @200 MHz | RTL sim vs emulator | est. LUT / FF / DSP | "
        f"Yosys LUT / FF / DSP ({PART}) | estimate error LUT / FF / DSP |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        sim = r.get("sim", {})
        simtxt = (
            f"bit-exact on {sim['vectors']:,} jets, II={sim['ii']:.0f}"
            if sim.get("exact")
            else sim.get("error", "MISMATCH")
        )
        e = r["estimate"]
        y = r.get("yosys", {})
        ytxt = (
            f"{_n(y['lut'])} / {_n(y['ff'])} / {_n(y['dsp'])} ({y['utilisation_lut_pct']:.2f}% LUT, "
            f"{y['seconds']:.0f} s)"
            if "lut" in y
            else f"not run: {y.get('error', 'skipped')}"
        )
        err = r.get("estimate_error")
        etxt = (
            " / ".join(f"{v:+.0%}" if v is not None else "-" for v in err.values()) if err else "-"
        )
        lines.append(
            f"| {r['model']} | {r['accuracy_fixed']:.4f} / {r['accuracy_float']:.4f} | "
            f"{r['latency_cycles']} cycles = {r['latency_ns']:g} ns | {simtxt} | "
            f"{_n(e['lut'])} / {_n(e['ff'])} / {_n(e['dsp'])} | {ytxt} | {etxt} |"
        )
    ref = REFERENCE
    lines.append(
        f"| {ref['model']} | {ref['accuracy']:.3f} (their data) | {ref['latency_cycles']} cycles = "
        f"{ref['latency_ns']} ns | - | - | ~{_n(ref['lut'])} / - / {ref['dsp']} (Vivado) | - |"
    )
    return "\n".join(lines)


def cal_table(cal: dict[str, Any]) -> str:
    lines = ["| design | estimate LUT / FF / DSP | Yosys LUT / FF / DSP |", "|---|---|---|"]
    for r in cal["rows"]:
        if "yosys" not in r:
            lines.append(f"| {r['design']} | - | {r['error']} |")
            continue
        e, y = r["estimate"], r["yosys"]
        lines.append(
            f"| {r['design']} | {e['lut']} / {e['ff']} / {e['dsp']} | {y['lut']} / {y['ff']} / {y['dsp']} |"
        )
    er = cal["errors"]
    lines.append("")
    lines.append("Mean (max) absolute relative error of the estimate: " + ", ".join(
        f"{k.upper()} {v['mean_abs_rel_error']:.0%} ({v['max_abs_rel_error']:.0%})"
        for k, v in er.items() if v["mean_abs_rel_error"] is not None
    ))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calibrate", action="store_true", help="only run the small-layer calibration")
    ap.add_argument(
        "--fit", action="store_true", help="fit estimate coefficients to the calibration results"
    )
    ap.add_argument(
        "--yosys-timeout",
        type=float,
        default=1500,
        help="seconds per full-model Yosys run (0: skip)",
    )
    ap.add_argument("--workdir", default="/tmp/lightspeed-bench-firmware")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="reuse Yosys results (or timeouts) from results/firmware.json for identical Verilog",
    )
    ap.add_argument(
        "--da4ml",
        action="store_true",
        help="only the per-layer comparison with da4ml (its venv: DA4ML_PYTHON)",
    )
    ap.add_argument("--cases", default=",".join(CASES), help="da4ml cases, comma-separated")
    ap.add_argument("--layers", default="", help="da4ml: only these layers (comma-separated)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    cal_path = RESULTS / "firmware_calibration.json"
    if args.fit:
        print(json.dumps(fit(json.loads(cal_path.read_text())), indent=1))
        return
    if args.calibrate:
        cal = calibrate(work, timeout=900)
        cal["machine"] = machine
        cal_path.write_text(json.dumps(cal, indent=1))
        print(cal_table(cal))
        return
    data = load_data()
    if args.da4ml:
        run_da4ml(data, work, args)
        return
    rows = []
    old = {}
    if args.reuse and (RESULTS / "firmware.json").exists():
        old = {r["model"]: r for r in json.loads((RESULTS / "firmware.json").read_text())["rows"]}
    for name, q in models(data).items():
        print(f"== {name}", flush=True)
        rows.append(run_model(name, q, data, work, args.yosys_timeout, old.get(name)))
        print(json.dumps(rows[-1], indent=1), flush=True)
    res = {
        "benchmark": "firmware",
        "part": PART,
        "clock_ns": CLOCK_NS,
        "test_jets": len(data["y_test"]),
        "rows": rows,
        "reference": REFERENCE,
        "machine": machine,
    }
    (RESULTS / "firmware.json").write_text(json.dumps(res, indent=1))
    md = table(res)
    print(md)
    cal_md = (
        cal_table(json.loads(cal_path.read_text())) if cal_path.exists() else "(run --calibrate)"
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(doc(res, md, cal_md))
    if (RESULTS / "firmware_da4ml.json").exists():  # keep the da4ml section
        import firmware_da4ml as fd

        fd.write_section(DOC, json.loads((RESULTS / "firmware_da4ml.json").read_text()))


def run_da4ml(data: dict[str, Any], work: Path, args) -> None:
    """Per layer vs da4ml; rows already in firmware_da4ml.json for other cases/layers are kept."""
    import firmware_da4ml as fd

    path = RESULTS / "firmware_da4ml.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    cases = [c for c in args.cases.split(",") if c]
    layers = [x for x in args.layers.split(",") if x] or None

    def save(res: dict[str, Any]) -> None:
        done = {(r["case"], r["layer"]) for r in res["rows"]}
        keep = [r for r in old if (r["case"], r["layer"]) not in done]
        order = {c: i for i, c in enumerate(fd.CASES + fd.NETWORK_CASES)}
        rows = sorted(keep + res["rows"], key=lambda r: (order[r["case"]], r["layer"]))
        out = {**res, "rows": rows, "machine": {"cpus": os.cpu_count()}}
        path.write_text(json.dumps(out, indent=1))
        fd.write_section(DOC, out)

    g = jet_graph(data["mean"], data["std"])
    res = fd.run(g, work / "da4ml", args.yosys_timeout, cases, layers, save=save)
    save(res)
    print(fd.table(json.loads(path.read_text())))


def verdict(res: dict[str, Any]) -> str:
    """The issue's goal (<= 25 ns and <= 12k LUT-equivalents for the 6-bit model), stated plainly."""
    r = next((r for r in res["rows"] if r["model"].startswith("6-bit")), None)
    if r is None or "lut" not in r.get("yosys", {}):
        return "Goal check: no Yosys result for the 6-bit model in this run."
    y = r["yosys"]
    lut_eq = y["lut"] + 55 * y["dsp"]  # LUT-equivalents: 55 LUTs per DSP (as the QAT benchmark)
    ok_lat = r["latency_ns"] <= 25
    ok_lut = lut_eq <= 12_000
    return (
        f"Goal check (6-bit model): latency {r['latency_ns']:g} ns vs goal <= 25 ns "
        f"({'met' if ok_lat else 'not met'}); {lut_eq:,} LUT-equivalents (Yosys) vs goal <= 12,000 "
        f"({'met' if ok_lut else 'not met'}). This unpruned post-training-quantized model keeps all "
        "4,256 weights and ~15-bit activations, so its adder trees are wide; the published design is "
        "QAT-trained, pruned and uses 6-bit activations, and Vivado packs adders into fewer LUTs."
    )


def doc(res: dict[str, Any], md: str, cal_md: str) -> str:
    return f"""## Firmware (jet tagger, Verilog, {PART})

`python benchmarks/firmware.py` -- the shipped 16->64->32->32->5 jet tagger on standardised features
({res["test_jets"]:,} test jets, all of them also streamed through the RTL), Verilog from
`lightspeed firmware` at {CLOCK_NS:g} ns (200 MHz), simulated with Verilator (one jet per clock,
bit-exact check against the emulator) and synthesized with Yosys `synth_xilinx -family xcup`
(open-source, no Vivado). LUT counts include SRLs. Machine: {res["machine"]["cpus"]} shared cores.

{md}

{verdict(res)}

**Estimate calibration** (`python benchmarks/firmware.py --calibrate`, small layers, Yosys as truth):

{cal_md}

**Yosys vs Vivado.** Yosys maps every non-trivial `*` to a DSP48E2 and keeps adders as LUT+CARRY
chains without Vivado's ternary-adder packing, LUT combining or retiming, so its LUT counts run higher
and its DSP counts follow our `--multipliers` choice exactly (auto: constants with at most 3 signed
digits become shift-and-add, the rest DSPs); Vivado HLS/hls4ml decides per multiplication and packs
more. The reference row is Vivado on a QKeras-trained, pruned model (different data, 6-bit activations);
compare the shape, not the digits. Latency here is the pipeline depth the generator chose for a
{CLOCK_NS:g} ns clock from its own delay model; timing closure needs Vivado.
"""


if __name__ == "__main__":
    main()
