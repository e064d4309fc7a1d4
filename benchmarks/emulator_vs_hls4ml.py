"""Bit-exact emulator vs hls4ml 1.3 C simulation, side by side in one run.

Two models, the same PyTorch weights and the same types (uniform ap_fixed<16,6>,
hls4ml ``granularity='model'``, Vitis backend, io_parallel, Latency strategy):

* the jet-tagging MLP 16->64->32->32->5;
* a 40,714-parameter CNN on 16x16 calorimeter-like images:
  Conv2D(1->8, 3x3) ReLU MaxPool(2) Conv2D(8->16, 3x3) ReLU Flatten Dense(400->96) ReLU Dense(96->10).

Measured:

(a) model file to first bit-exact prediction: lightspeed ``load(ONNX)`` + ``quantize`` +
    ``save`` (the compiled directory) + ``predict``, against hls4ml ``torch.load`` +
    ``config_from_pytorch_model`` + ``convert_from_pytorch_model`` + ``compile`` (write +
    g++) + ``predict``, on the same first batch;
(b) throughput: lightspeed on 100k samples, hls4ml on a prefix of the same samples (its
    ``predict`` is a Python loop at ~0.1-10k samples/s; the prefix size is recorded);
    every output hls4ml computed is compared bit for bit (``mismatching_outputs`` must be 0).

Plus, on the CNN: lightspeed ``auto`` precision (overflow warnings, float-vs-fixed error)
against hls4ml's default ap_fixed<16,6>, whose outputs collapse on these inputs.

Writes benchmarks/results/emulator_vs_hls4ml.json and prints Markdown tables.

    python benchmarks/emulator_vs_hls4ml.py            # full run (~5-10 min on 2 cores)
    python benchmarks/emulator_vs_hls4ml.py --quick    # 20k samples, short hls4ml prefixes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRECISION = "ap_fixed<16,6>"


# ----------------------------------------------------------------------------- models + data
def make_mlp():
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(16, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    ).eval()


def make_cnn():
    import torch

    torch.manual_seed(1)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(400, 96),
        nn.ReLU(),
        nn.Linear(96, 10),
    ).eval()


def mlp_data(n: int, seed: int = 0) -> np.ndarray:
    """Standardised jet features."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, 16))


def cnn_data(n: int, seed: int = 0) -> np.ndarray:
    """Calorimeter-like 16x16 images: 2-5 showers with exponential energies (GeV) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    img = np.abs(rng.normal(0.0, 0.05, (n, 16, 16)))
    for k in range(5):
        on = (k < 2) | (rng.random(n) < 0.5)
        e = rng.exponential(25.0, n) * on
        cy, cx = rng.uniform(3, 13, n), rng.uniform(3, 13, n)
        width = rng.uniform(0.6, 1.5, n)
        r2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
        shower = np.exp(-r2 / (2 * width[:, None, None] ** 2))
        img += e[:, None, None] * shower / shower.sum(axis=(1, 2), keepdims=True) * 4
    return img[:, None]


def export(model, shape: tuple[int, ...], workdir: Path, name: str) -> tuple[Path, Path]:
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # legacy exporter notice

    onnx_path, pt_path = workdir / f"{name}.onnx", workdir / f"{name}.pt"
    torch.onnx.export(
        model,
        (torch.zeros(1, *shape),),
        str(onnx_path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    torch.save(model, pt_path)
    return onnx_path, pt_path


# ----------------------------------------------------------------------------- the two sides
def lightspeed_first(onnx_path: Path, shape, x: np.ndarray, outdir: Path):
    import lightspeed

    t0 = time.perf_counter()
    g = lightspeed.load(str(onnx_path), input_shape=shape)
    q = lightspeed.quantize(g, PRECISION)
    q.save(outdir)
    y = q.predict(x)
    return time.perf_counter() - t0, q, y


def hls4ml_first(pt_path: Path, shape, x: np.ndarray, outdir: Path):
    import hls4ml
    import torch

    t0 = time.perf_counter()
    model = torch.load(pt_path, weights_only=False)
    cfg = hls4ml.utils.config_from_pytorch_model(
        model, shape, default_precision=PRECISION, granularity="model", backend="Vitis"
    )
    cfg["Model"]["Strategy"] = "Latency"
    hm = hls4ml.converters.convert_from_pytorch_model(
        model, hls_config=cfg, output_dir=str(outdir), backend="Vitis", io_type="io_parallel"
    )
    t_convert = time.perf_counter() - t0
    hm.compile()
    t_compile = time.perf_counter() - t0 - t_convert
    y = np.asarray(hm.predict(np.ascontiguousarray(x, dtype=np.float64)), dtype=np.float64)
    return time.perf_counter() - t0, hm, y, {"convert_s": t_convert, "compile_s": t_compile}


def timed(fn, repeats: int = 1):
    """(best wall-clock s, CPU s of that run (all threads of this process), result)."""
    best, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, c = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, cpu = wall, c
    return best, cpu, out


def mismatches(a: np.ndarray, b: np.ndarray) -> int:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a.shape != b.shape:
        return int(max(a.size, b.size))
    return int(np.count_nonzero(a != b))


def first_prediction(name, model, shape, data, n_samples, n_first, workdir: Path) -> dict:
    """(a): model file to the first bit-exact prediction, on both sides."""
    print(f"\n== {name}: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    onnx_path, pt_path = export(model, shape, workdir, name)
    x = data(n_samples)
    first = x[:n_first]
    t_ls, q, y_ls_first = lightspeed_first(onnx_path, shape, first, workdir / f"{name}_compiled")
    print(f"lightspeed load+quantize+save+predict({n_first}): {t_ls:.3f} s", flush=True)
    t_h, hm, y_h_first, parts = hls4ml_first(pt_path, shape, first, workdir / f"{name}_hls4ml")
    print(
        f"hls4ml convert+compile+predict({n_first}): {t_h:.1f} s "
        f"(convert {parts['convert_s']:.2f} s, compile {parts['compile_s']:.1f} s)",
        flush=True,
    )
    res = {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "input_shape": list(shape),
        "precision": PRECISION,
        "first_prediction": {
            "samples": n_first,
            "lightspeed_s": t_ls,
            "hls4ml_s": t_h,
            "hls4ml_parts_s": parts,
            "speedup": t_h / t_ls,
            "mismatching_outputs": mismatches(y_ls_first, y_h_first),
        },
    }
    return {"res": res, "q": q, "hm": hm, "x": x}


def throughput(name: str, run: dict, n_hls: int) -> np.ndarray:
    """(b): lightspeed on all samples, hls4ml on a prefix; every hls4ml output compared."""
    q, hm, x, res = run["q"], run["hm"], run["x"], run["res"]
    print(f"\n== {name} throughput", flush=True)
    # warm-up: a batch big enough to load numba and its cached kernels (a one-off ~1-3 s)
    q.predict(x[: min(len(x), 20_000)])
    t_ls_all, c_ls_all, y_ls = timed(lambda: q.predict(x), repeats=3)
    ls_rate, ls_cpu_rate = len(x) / t_ls_all, len(x) / c_ls_all
    print(
        f"lightspeed predict({len(x):,}): {t_ls_all:.3f} s = {ls_rate:,.0f} samples/s "
        f"({ls_cpu_rate:,.0f}/s per CPU-second)",
        flush=True,
    )
    xs = np.ascontiguousarray(x[:n_hls], dtype=np.float64)
    t_h_all, c_h_all, y_h = timed(lambda: np.asarray(hm.predict(xs), dtype=np.float64))
    h_rate, h_cpu_rate = len(xs) / t_h_all, len(xs) / c_h_all
    print(
        f"hls4ml predict({len(xs):,}): {t_h_all:.2f} s = {h_rate:,.0f} samples/s "
        f"({h_cpu_rate:,.0f}/s per CPU-second)",
        flush=True,
    )
    res["throughput"] = {
        "lightspeed_samples": len(x),
        "lightspeed_s": t_ls_all,
        "lightspeed_samples_per_s": ls_rate,
        "hls4ml_samples": len(xs),
        "hls4ml_s": t_h_all,
        "hls4ml_samples_per_s": h_rate,
        "speedup": ls_rate / h_rate,
        "lightspeed_samples_per_cpu_s": ls_cpu_rate,
        "hls4ml_samples_per_cpu_s": h_cpu_rate,
        "speedup_per_cpu_s": ls_cpu_rate / h_cpu_rate,
        "lightspeed_threads": int(os.environ.get("LIGHTSPEED_THREADS") or os.cpu_count() or 1),
        "compared_outputs": int(y_h.size),
        "mismatching_outputs": mismatches(y_ls[:n_hls], y_h),
    }
    f = res["first_prediction"]
    print(
        f"speedups: first prediction {f['speedup']:.0f}x, throughput "
        f"{res['throughput']['speedup']:.0f}x; mismatching outputs "
        f"{f['mismatching_outputs'] + res['throughput']['mismatching_outputs']}"
    )
    return y_ls


def precision_study(
    onnx_path: Path, shape, x: np.ndarray, y_uniform: np.ndarray, n_cal: int
) -> dict:
    """auto precision vs hls4ml's default ap_fixed<16,6> (bit-identical to y_uniform)."""
    import lightspeed

    g = lightspeed.load(str(onnx_path), input_shape=shape)
    cal, test = x[:n_cal], x[n_cal:]
    q = lightspeed.quantize(g, "auto", calibration=cal)
    y_float = q.predict_float(test)
    t, _, y_auto = timed(lambda: q.predict(test))
    out = {}
    for label, y in (("auto", y_auto), (PRECISION + " (hls4ml default)", y_uniform[n_cal:])):
        err = np.abs(y - y_float)
        out[label] = {
            "max_abs_error": float(err.max()),
            "mean_abs_error": float(err.mean()),
            "argmax_agreement": float(np.mean(y.argmax(1) == y_float.argmax(1))),
            "distinct_argmax_classes": len(np.unique(y.argmax(1))),
        }
    out["float_output_range"] = [float(y_float.min()), float(y_float.max())]
    out["auto_overflow_warnings"] = q.overflow_warnings()
    out["auto_types"] = {n: {r: str(t) for r, t in p.items()} for n, p in q.precision.items()}
    out["auto_samples_per_s"] = len(test) / t
    out["test_samples"] = len(test)
    return out


# ----------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    rows = [
        "| model | params | first prediction: lightspeed | hls4ml | speedup | throughput: lightspeed | hls4ml | speedup | per CPU-second | mismatching outputs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("mlp", "cnn"):
        r = results["models"][name]
        f, t = r["first_prediction"], r["throughput"]
        rows.append(
            f"| {name} | {r['parameters']:,} | {f['lightspeed_s']:.2f} s | {f['hls4ml_s']:.1f} s | "
            f"{f['speedup']:.0f}x | {t['lightspeed_samples_per_s']:,.0f}/s | "
            f"{t['hls4ml_samples_per_s']:,.0f}/s | {t['speedup']:.0f}x | {t['speedup_per_cpu_s']:.0f}x | "
            f"{f['mismatching_outputs'] + t['mismatching_outputs']} of {t['compared_outputs']:,} outputs |"
        )
    p = results["cnn_precision"]
    rows += [
        "",
        "| CNN precision | max abs error vs float | argmax agreement | distinct argmax classes |",
        "|---|---:|---:|---:|",
    ]
    for label, v in p.items():
        if isinstance(v, dict) and "max_abs_error" in v:
            rows.append(
                f"| {label} | {v['max_abs_error']:.4g} | {v['argmax_agreement']:.3f} | "
                f"{v['distinct_argmax_classes']} |"
            )
    rows.append(
        f"\nauto precision overflow warnings: {len(p['auto_overflow_warnings'])}; "
        f"float outputs range {p['float_output_range'][0]:.3g}..{p['float_output_range'][1]:.3g}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--samples", type=int, default=100_000, help="samples for lightspeed throughput"
    )
    ap.add_argument(
        "--mlp-hls4ml-samples",
        type=int,
        default=20_000,
        help="prefix of the samples run through hls4ml for the MLP",
    )
    ap.add_argument(
        "--cnn-hls4ml-samples",
        type=int,
        default=1_000,
        help="prefix of the samples run through hls4ml for the CNN",
    )
    ap.add_argument("--first", type=int, default=100, help="batch size of the first prediction")
    ap.add_argument("--quick", action="store_true", help="20k samples, 2k/200 hls4ml samples")
    ap.add_argument("--out", type=Path, default=RESULTS / "emulator_vs_hls4ml.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.mlp_hls4ml_samples, args.cnn_hls4ml_samples = 20_000, 2_000, 200

    import hls4ml
    import torch

    import lightspeed
    import lightspeed.frontends.onnx

    torch.set_num_threads(1)
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "hls4ml": hls4ml.__version__,
            "lightspeed": lightspeed.__version__,
        },
        "command": "python benchmarks/emulator_vs_hls4ml.py" + (" --quick" if args.quick else ""),
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="ls-vs-hls4ml-") as tmp:
        work = Path(tmp)
        # all first predictions first: each as in a fresh process (numba not yet loaded)
        runs = {
            "mlp": first_prediction(
                "mlp", make_mlp(), (16,), mlp_data, args.samples, args.first, work
            ),
            "cnn": first_prediction(
                "cnn", make_cnn(), (1, 16, 16), cnn_data, args.samples, args.first, work
            ),
        }
        throughput("mlp", runs["mlp"], args.mlp_hls4ml_samples)
        y_uniform = throughput("cnn", runs["cnn"], args.cnn_hls4ml_samples)
        results["models"] = {name: run["res"] for name, run in runs.items()}
        results["cnn_precision"] = precision_study(
            work / "cnn.onnx",
            (1, 16, 16),
            runs["cnn"]["x"],
            y_uniform,
            n_cal=min(10_000, len(runs["cnn"]["x"]) // 2),
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print()
    print(markdown(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
