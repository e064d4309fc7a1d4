"""`lightspeed demo`: the end-to-end run on the shipped jet tagger and Pythia8 jets.

Each stage is a small function so later stages (firmware, serving, reports)
add one call each.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.rule import Rule


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=1) == labels))


def stage_compile(workdir: Path, console: Console) -> tuple[Any, dict[str, Any]]:
    from lightspeed.data import load_default_jets
    from lightspeed.frontends import load_model
    from lightspeed.quantize import quantize
    from lightspeed.quantize.report import render_report
    from lightspeed.zoo import model_path

    jets = load_default_jets()
    train, test = jets.split(test_fraction=0.25, seed=0)
    console.print(
        f"data: {len(jets):,} Pythia8 jets ({', '.join(jets.class_names)}), "
        f"{jets.features.shape[1]} substructure features; calibration on 2,000 training jets"
    )
    model_file = model_path("jet_tagger")
    t0 = time.perf_counter()
    graph = load_model(model_file)
    q = quantize(graph, precision="auto", calibration=train.features[:2000])
    outdir = q.save(workdir / "jet_tagger", source={"model": str(model_file), "precision": "auto"})
    t_compile = time.perf_counter() - t0
    console.print(
        f"compiled {model_file.name} with auto precision in {t_compile:.2f} s -> {outdir}"
    )
    rep = q.report()
    render_report(rep, console)

    x = test.features
    t0 = time.perf_counter()
    fixed = q.predict(x)
    t_emul = time.perf_counter() - t0
    flt = q.predict_float(x)
    acc_float, acc_fixed = _accuracy(flt, test.labels), _accuracy(fixed, test.labels)
    agree = float(np.mean(flt.argmax(1) == fixed.argmax(1)))
    console.print(
        f"test set ({len(test):,} jets): float accuracy {acc_float:.4f}, fixed-point accuracy "
        f"{acc_fixed:.4f}, argmax agreement {agree:.4f}; emulated {len(x) / t_emul:,.0f} jets/s"
    )
    results = {
        "model": str(model_file.name),
        "compile_seconds": t_compile,
        "test_jets": len(test),
        "accuracy_float": acc_float,
        "accuracy_fixed": acc_fixed,
        "argmax_agreement": agree,
        "emulation_rate_per_s": len(x) / t_emul,
        "max_abs_error": float(np.abs(flt - fixed).max()),
        "data": {
            "source": "shipped Pythia8 + FastJet jets (lightspeed/data/jets_default.h5)",
            "jets": len(jets),
            "classes": list(jets.class_names),
            "features": int(jets.features.shape[1]),
            "calibration_jets": 2000,
            "split": "75% train / 25% test, seed 0",
        },
        "report": rep,
    }
    np.save(workdir / "calibration.npy", train.features[:2000].astype(np.float32))
    np.save(workdir / "test_inputs.npy", x.astype(np.float32))
    results["commands"] = {
        "compile": f"lightspeed compile {model_file} --precision auto "
        f"--calibration {workdir / 'calibration.npy'} -o {workdir / 'jet_tagger'}",
        "report": f"lightspeed report {workdir / 'jet_tagger'}",
        "predict": f"lightspeed predict {workdir / 'jet_tagger'} --input "
        f"{workdir / 'test_inputs.npy'} --output {workdir / 'scores.npy'}",
    }
    return q, results


def stage_firmware(q: Any, workdir: Path, console: Console) -> dict[str, Any]:
    try:
        from lightspeed.firmware import demo_step
    except ImportError:
        console.print("[yellow]firmware stage not available in this build[/yellow]")
        return {}
    return demo_step(q, workdir, console)


# the published reference for a 6-bit QKeras jet tagger of this architecture
HLS4ML_REFERENCE = {
    "source": "hls4ml + QKeras + Vivado, Coelho et al., Nature Machine Intelligence 3 (2021)",
    "latency_ns": 40,
    "dsp": 22,
    "lut": 11_800,  # about 1% of a VU9P
    "note": "Vivado synthesis; not measured here",
}


def stage_trigger(workdir: Path, console: Console, firmware: bool = True) -> dict[str, Any]:
    """The zoo's 6-bit QAT, 70%-pruned tagger at its trained types: accuracy, latency, size."""
    from lightspeed import zoo
    from lightspeed.data import load_default_jets
    from lightspeed.zoo._common import SPLIT_SEED, TEST_FRACTION

    if "jet_tagger_q6" not in zoo.list_models():
        console.print("[yellow]the 6-bit pruned tagger is not shipped in this build[/yellow]")
        return {}
    q = zoo.quantize("jet_tagger_q6")  # trained precision: no calibration
    _, test = load_default_jets().split(TEST_FRACTION, SPLIT_SEED)
    t0 = time.perf_counter()
    fixed = q.predict(test.features)
    t_emul = time.perf_counter() - t0
    card = zoo.info("jet_tagger_q6")
    zeros = [float((p["weight"] == 0).mean()) for p in q.qparams.values() if "weight" in p]
    out: dict[str, Any] = {
        "model": "jet_tagger_q6",
        "accuracy_fixed": _accuracy(fixed, test.labels),
        "test_jets": len(test),
        "emulation_rate_per_s": len(test) / t_emul,
        "weight_sparsity": zeros,
        "types": card.training.get("types", {}),
        "reference": HLS4ML_REFERENCE,
    }
    console.print(
        f"6-bit QAT, 70%-pruned tagger (zoo jet_tagger_q6, trained types): fixed-point accuracy "
        f"{out['accuracy_fixed']:.4f} on {len(test):,} test jets"
    )
    if firmware:
        from lightspeed.firmware import generate

        fw = generate(q, workdir / "firmware_q6")
        est = fw.manifest.get("estimate", {})
        out.update(
            latency_cycles=fw.latency,
            latency_ns=fw.latency * fw.clock_period,
            clock_period_ns=fw.clock_period,
            estimate={k: est.get(k) for k in ("lut", "ff", "dsp")},
        )
        console.print(
            f"firmware: {fw.latency} cycles = {fw.latency * fw.clock_period:g} ns, estimate "
            f"~{est.get('lut')} LUT, {est.get('ff')} FF, {est.get('dsp')} DSP; published hls4ml "
            f"reference (Vivado): {HLS4ML_REFERENCE['latency_ns']} ns, "
            f"~{HLS4ML_REFERENCE['lut']:,} LUT, {HLS4ML_REFERENCE['dsp']} DSP"
        )
    return out


def run_demo(
    workdir: Path, firmware: bool = True, console: Console | None = None
) -> dict[str, Any]:
    console = console or Console(width=140)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    console.print(Rule("1. compile + bit-exact emulation"))
    q, results["compile"] = stage_compile(workdir, console)
    commands = results["commands"] = results["compile"].pop("commands")
    if firmware:
        console.print(Rule("2. firmware: Verilog, RTL simulation, resources"))
        results["firmware"] = stage_firmware(q, workdir, console)
        fwdir = workdir / "firmware"
        commands.update(
            {
                "firmware": f"lightspeed firmware {workdir / 'jet_tagger'} -o {fwdir}",
                "sim": f"lightspeed sim {fwdir} --input {workdir / 'rtl_vectors.npy'} --check",
                "estimate": f"lightspeed synth {fwdir} --estimate --part xcvu9p",
                "synth": f"lightspeed synth {fwdir} --part xcvu9p   # Yosys, minutes",
            }
        )
    console.print(Rule("3. the trigger-ready tagger: 6-bit QAT, 70% pruned"))
    results["trigger"] = stage_trigger(workdir, console, firmware)
    if results["trigger"]:
        commands["trigger"] = (
            "lightspeed compile "
            f"{Path(__file__).parent / 'zoo' / 'models' / 'jet_tagger_q6.onnx'} "
            f"--precision trained -o {workdir / 'jet_tagger_q6'}"
        )
    (workdir / "demo_results.json").write_text(json.dumps(results, indent=1, default=str))
    console.print(f"results written to {workdir / 'demo_results.json'}")
    from lightspeed.bench.demo_page import demo_report

    console.print(f"report: {demo_report(workdir)} (open it in a browser)")
    return results
