"""Streaming CNNs (``lightspeed firmware --io stream``): fit, bit-exactness, latency, II, Yosys.

Two models:

* ``cnn40k``: the 40,714-parameter benchmark CNN of ``emulator_vs_hls4ml.py`` (16x16x1
  calorimeter-like images; Conv 3x3 1->8, ReLU, MaxPool 2, Conv 3x3 8->16, ReLU, Flatten,
  Dense 400->96, ReLU, Dense 96->10), ``auto`` precision with 8-bit weights (and, estimate
  only, with the default 16-bit weights), against an xcvu9p (target: <= 50% of its LUTs);
* ``tiny32``: a plain 32x32x3 image CNN of MLPerf Tiny image-classification size (~53k
  parameters: Conv 3->16, 16->32, pool, 32->32, pool, 32->64, pool, Dense 256->64->10; 'valid'
  convolutions, no residuals), against a Zynq-7020 (PYNQ-Z2: 53,200 LUT, 220 DSP).

For each: float-vs-fixed argmax agreement, the fully parallel graph estimate, the streaming
estimate (graph-level and netlist), the Verilator check on images fed pixel by pixel
(bit-exact count, latency, II) and, where the estimate is within reach, Yosys
``synth_xilinx`` LUT/FF/DSP. Untrained weights (seeded): resources and bit-exactness do
not depend on training; accuracy is not the point here.

    python benchmarks/streaming.py                       # everything (Yosys: minutes, nice'd)
    python benchmarks/streaming.py --yosys-timeout 0     # skip Yosys
    python benchmarks/streaming.py --models cnn40k

Writes benchmarks/results/streaming.json and prints a table.
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
CLOCK_NS = 5.0


def cnn40k_graph():
    import lightspeed
    from emulator_vs_hls4ml import export, make_cnn

    work = Path(os.environ.get("LIGHTSPEED_BENCH_DIR", "/tmp/lightspeed-streaming"))
    work.mkdir(parents=True, exist_ok=True)
    onnx_path, _ = export(make_cnn(), (1, 16, 16), work, "cnn40k")
    return lightspeed.load(str(onnx_path), input_shape=(1, 16, 16))


def cnn40k_data(n: int, seed: int = 0) -> np.ndarray:
    from emulator_vs_hls4ml import cnn_data

    return cnn_data(n, seed)


def tiny32_graph():
    from lightspeed.ir import Graph, Node, infer_shapes

    rng = np.random.default_rng(7)

    def conv(name, cin, cout, src, dst):
        std = (2.0 / (9 * cin)) ** 0.5
        w = {"weight": rng.normal(0, std, (cout, cin, 3, 3)), "bias": rng.normal(0, 0.05, cout)}
        return Node(name, "conv", [src], [dst], {}, w)

    def dense(name, a, b, src, dst):
        w = {"weight": rng.normal(0, (2.0 / a) ** 0.5, (a, b)), "bias": rng.normal(0, 0.05, b)}
        return Node(name, "dense", [src], [dst], {}, w)

    nodes = [
        conv("conv1", 3, 16, "x", "c1"), Node("relu1", "relu", ["c1"], ["r1"]),
        conv("conv2", 16, 32, "r1", "c2"), Node("relu2", "relu", ["c2"], ["r2"]),
        Node("pool2", "maxpool", ["r2"], ["p2"], {"kernel_shape": [2, 2]}),
        conv("conv3", 32, 32, "p2", "c3"), Node("relu3", "relu", ["c3"], ["r3"]),
        Node("pool3", "maxpool", ["r3"], ["p3"], {"kernel_shape": [2, 2]}),
        conv("conv4", 32, 64, "p3", "c4"), Node("relu4", "relu", ["c4"], ["r4"]),
        Node("pool4", "maxpool", ["r4"], ["p4"], {"kernel_shape": [2, 2]}),
        Node("flat", "flatten", ["p4"], ["f"]),
        dense("fc1", 256, 64, "f", "h1"), Node("relu5", "relu", ["h1"], ["a1"]),
        dense("fc2", 64, 10, "a1", "y"),
    ]  # fmt: skip
    return infer_shapes(Graph("tiny32", {"x": (3, 32, 32)}, ["y"], nodes))


def tiny32_data(n: int, seed: int = 0) -> np.ndarray:
    """CIFAR-like images: smooth colour blobs on [0, 1], per-channel standardised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    img = rng.uniform(0, 0.2, (n, 3, 32, 32))
    for _ in range(3):
        cy, cx = rng.uniform(4, 28, (2, n))
        r = rng.uniform(3, 10, n)
        col = rng.uniform(0, 1, (n, 3))
        blob = np.exp(
            -((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / r[:, None, None] ** 2
        )
        img += col[:, :, None, None] * blob[:, None]
    return (img - 0.5) / 0.5


def n_params(g) -> int:
    return int(sum(np.asarray(v).size for n in g.nodes for v in n.params.values()))


CASES = {
    # name: (graph, data, part, AutoOptions kwargs, run firmware)
    "cnn40k": (cnn40k_graph, cnn40k_data, "xcvu9p", {"weight_bits": 8, "frac_bits": 6}, True),
    "cnn40k-w16": (cnn40k_graph, cnn40k_data, "xcvu9p", {}, False),
    "tiny32": (tiny32_graph, tiny32_data, "xc7z020", {"weight_bits": 8, "frac_bits": 6}, True),
    "tiny32-w4": (tiny32_graph, tiny32_data, "xc7z020", {"weight_bits": 4, "frac_bits": 4}, True),
}


def run_case(name: str, args, work: Path) -> dict[str, Any]:
    import lightspeed
    from lightspeed import firmware
    from lightspeed.firmware.config import FirmwareOptions
    from lightspeed.firmware.fit import quick_estimate
    from lightspeed.firmware.parts import get_part
    from lightspeed.firmware.verilog.stream import build_stream, estimate_stream
    from lightspeed.quantize import AutoOptions

    make_graph, data, part_name, auto, do_fw = CASES[name]
    part = get_part(part_name)
    g = make_graph()
    x = data(args.calibration + args.images, seed=0)
    q = lightspeed.quantize(
        g, "auto", calibration=x[: args.calibration], options=AutoOptions(**auto)
    )
    test = x[args.calibration :]
    agree = float(np.mean(q.predict(test).argmax(1) == q.predict_float(test).argmax(1)))
    row: dict[str, Any] = {
        "model": name, "params": n_params(g), "part": part_name, "auto_options": auto,
        "input_shape": list(g.inputs["x"]),
        "types": {"input": str(q.input_types["x"]), "output": str(q.output_types["y"])},
        "argmax_agreement_fixed_vs_float": agree,
    }  # fmt: skip
    par = quick_estimate(q, part)
    row["parallel_estimate"] = {"lut": round(par.lut), "ff": round(par.ff), "dsp": round(par.dsp)}
    t0 = time.perf_counter()
    quick = quick_estimate(q, part, FirmwareOptions(io="stream"))
    row["stream_graph_estimate"] = {
        "lut": round(quick.lut), "ff": round(quick.ff), "dsp": round(quick.dsp),
        "seconds": round(time.perf_counter() - t0, 3),
    }  # fmt: skip
    sd = build_stream(q, FirmwareOptions(io="stream"))
    est = estimate_stream(sd)
    row["stream_netlist_estimate"] = {
        "lut": round(est.lut), "ff": round(est.ff), "dsp": round(est.dsp),
        "per_stage": {k: {kk: round(vv) for kk, vv in v.items()} for k, v in est.per_layer.items()},
    }  # fmt: skip
    row["stages"] = sd.layers()
    row["dense_streamed"] = sd.dense is not None
    row["ii_cycles"] = sd.ii
    print(
        f"{name}: {row['params']:,} params, parallel ~{par.lut:,.0f} LUT / {par.dsp:,.0f} DSP; "
        f"stream ~{est.lut:,.0f} LUT / {est.dsp:,.0f} DSP (graph ~{quick.lut:,.0f}); "
        f"fixed-vs-float argmax {agree:.3f}",
        flush=True,
    )
    if not do_fw:
        return row
    fwdir = work / f"fw_{name}"
    t0 = time.perf_counter()
    fw = firmware.generate(q, fwdir, io="stream", part=None, clock_period=CLOCK_NS)
    row["generate_seconds"] = round(time.perf_counter() - t0, 2)
    row["verilog_mb"] = round((fwdir / "rtl" / f"{fw.top}.v").stat().st_size / 1e6, 2)
    if args.images:
        imgs = test[: args.images]
        r = firmware.check(fw, imgs, q=q)
        row["verilator"] = {
            "images": r["vectors"], "exact": r["exact"], "mismatched_values": r["mismatched_values"],
            "latency_first_beat_to_result": r["latency"],
            "latency_last_beat_to_result": r["latency"] - (sd.pixels_in - 1),
            "ii_cycles_per_image": r["ii"], "build_seconds": round(r["build_seconds"], 1),
        }  # fmt: skip
        print(f"  verilator: {row['verilator']}", flush=True)
    fits_estimate = est.lut <= 3 * part.lut
    if args.yosys_timeout and fits_estimate:
        t0 = time.perf_counter()
        try:
            rep = firmware.synthesize(fw, part=part_name, timeout=args.yosys_timeout)
            d = rep.to_dict()
            row["yosys"] = {
                k: d.get(k) for k in ("lut", "ff", "dsp", "carry", "bram", "utilisation")
            } | {"seconds": round(time.perf_counter() - t0, 1)}
            print(f"  yosys: {row['yosys']}", flush=True)
        except Exception as exc:  # a timeout is a result too
            row["yosys"] = {"error": str(exc)[:300], "seconds": round(time.perf_counter() - t0, 1)}
            print(f"  yosys: {row['yosys']}", flush=True)
    elif not fits_estimate:
        row["yosys"] = {"skipped": f"estimate {est.lut:,.0f} LUT is over 3x the {part_name}"}
    return row


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--models", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES)
    )
    ap.add_argument("--images", type=int, default=200, help="images through Verilator (0: skip)")
    ap.add_argument("--calibration", type=int, default=2000)
    ap.add_argument(
        "--yosys-timeout", type=float, default=3600, help="seconds per design (0: skip)"
    )
    ap.add_argument("--out", default=str(RESULTS / "streaming.json"))
    args = ap.parse_args()
    work = Path(os.environ.get("LIGHTSPEED_BENCH_DIR", "/tmp/lightspeed-streaming"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    rows = {r["model"]: r for r in old.get("models", [])}
    for name in args.models.split(","):
        rows[name] = run_case(name.strip(), args, work)
    result = {
        "benchmark": "streaming CNNs (--io stream)",
        "clock_period_ns": CLOCK_NS,
        "machine": platform.platform(),
        "models": [rows[k] for k in CASES if k in rows],
    }
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
