"""Core verbs: compile, predict, report, export, demo."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from lightspeed.errors import InputError
from lightspeed.files import load_array_file, save_array_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="quantize a model and write a compiled model directory",
        description="Import MODEL (ONNX/QONNX, Keras/QKeras), choose fixed-point types (auto from calibration "
        "data, or one type for everything plus per-layer overrides) and write OUTDIR, which "
        "predict/report/export/firmware/serve load without the original framework.",
    )
    p.add_argument(
        "model", help="model file: .onnx (QONNX included), Keras .keras/.h5, or a Keras "
        "architecture .json with --weights",
    )  # fmt: skip
    p.add_argument("--weights", help="weights .h5 of a Keras architecture .json")
    p.add_argument("-o", "--output", required=True, help="compiled model directory to write")
    p.add_argument(
        "--precision", default="auto",
        help="'auto' (default: size types from calibration data, exact accumulation), one type "
        "for every tensor, e.g. 'ap_fixed<16,6>', 'trained' (keep the types a QAT/QONNX model "
        "carries, round nowhere else), or 'search' (per-layer widths found by greedy "
        "search with quantization-aware fine-tuning; needs torch and --calibration data)",
    )  # fmt: skip
    p.add_argument(
        "--budget", type=float, default=0.01,
        help="search: allowed relative accuracy loss vs the float model (default 0.01 = keep 99%%)",
    )  # fmt: skip
    p.add_argument(
        "--labels", help="search: class index per calibration sample (.npy); without it the float "
        "model's argmax is the target",
    )  # fmt: skip
    p.add_argument(
        "--search-cost", default="bops", choices=["bops", "lut"],
        help="search: cost to minimise, bit operations (default) or the firmware's LUT-equivalent "
        "estimate (LUT + 55 DSP)",
    )  # fmt: skip
    p.add_argument("--config", help="YAML/JSON precision config with per-input/per-layer overrides")
    p.add_argument(
        "--calibration", help="sample inputs (.npy for one input, .npz keyed by input name); "
        "required for auto precision",
    )  # fmt: skip
    p.add_argument(
        "--input-shape", action="append", default=[],
        help="static input shape without batch, e.g. '16' or '1,28,28' or 'name:1,28,28' "
        "(repeat per input); needed when the model's shapes are dynamic",
    )  # fmt: skip
    p.add_argument(
        "--input-type", action="append", default=[],
        help="fixed-point type of the model inputs, e.g. 'ap_fixed<16,6>' (hls4ml's default) "
        "for every input or 'name:ap_fixed<16,6>' per input (repeat); needed by "
        "--precision trained when no QONNX Quant or datatype annotation types an input",
    )  # fmt: skip
    p.add_argument("--weight-bits", type=int, help="auto: total bits of weights and biases (16)")
    p.add_argument("--frac-bits", type=int, help="auto: fractional bits kept by results (10)")
    p.add_argument("--quiet", action="store_true", help="do not print the report")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "predict", help="bit-exact fixed-point emulation of a compiled model",
        description="Run the compiled model on INPUT with the bit-exact emulator.",
    )  # fmt: skip
    p.add_argument("compiled", help="compiled model directory")
    p.add_argument("--input", required=True, help=".npy (one input) or .npz keyed by input name")
    p.add_argument("--output", required=True, help=".npy (one output) or .npz to write")
    p.add_argument("--trace", help="directory to dump every layer's fixed and float values (.npz)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "report", help="per-layer types, cost, error and overflow warnings",
        description="Print per-layer types, parameters, multiplications, bit operations, "
        "float-vs-fixed error on the calibration data and overflow warnings.",
    )  # fmt: skip
    p.add_argument("compiled", help="compiled model directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "export", help="export a compiled model (QONNX)",
        description="Export the quantized model to QONNX (standard ONNX ops plus Quant nodes "
        "carrying each tensor's fixed-point type), readable by hls4ml/FINN and by lightspeed.",
    )  # fmt: skip
    p.add_argument("compiled", help="compiled model directory")
    p.add_argument("--format", default="qonnx", choices=["qonnx"], help="export format")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "demo", help="end-to-end run on the shipped jet tagger and jets",
        description="Compile the shipped 16->64->32->32->5 jet tagger with auto precision on the "
        "shipped Pythia8 jets, emulate it bit-exactly, print the report, then generate Verilog, "
        "simulate it against the emulator and estimate its resources.",
    )  # fmt: skip
    p.add_argument(
        "--workdir", default="lightspeed-demo", help="where outputs go (default ./lightspeed-demo)"
    )
    p.add_argument(
        "--no-firmware", action="store_true", help="skip the RTL generation/simulation step"
    )
    p.set_defaults(func=cmd_demo)


# ---------------------------------------------------------------------------
# helpers


def parse_input_shapes(specs: list[str]) -> Any:
    """'16', '1,28,28' or 'name:1,28,28' -> shape tuple or {name: shape}."""
    if not specs:
        return None
    named: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, _, dims = spec.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise InputError(
                f"--input-shape {spec!r}: use comma-separated integers, e.g. 1,28,28"
            ) from None
        if not shape or min(shape) <= 0:
            raise InputError(f"--input-shape {spec!r}: dimensions must be positive integers")
        if not name and len(specs) == 1:
            return shape
        if not name:
            raise InputError("with several --input-shape options, name each: NAME:1,28,28")
        named[name] = shape
    return named


def parse_input_types(specs: list[str], names: list[str]) -> dict[str, str]:
    """'ap_fixed<16,6>' (every input) or 'name:ap_fixed<16,6>' -> {input: type string}."""
    out: dict[str, str] = {}
    every = None
    for spec in specs:
        head, sep, tail = spec.partition(":")
        if sep and "<" not in head:
            if head not in names:
                raise InputError(
                    f"--input-type {spec!r} names input {head!r}; the model inputs are "
                    f"{', '.join(names)}"
                )
            out[head] = tail.strip()
        elif every is None:
            every = spec.strip()
        else:
            raise InputError(
                "--input-type without a name applies to every input; give it once, or name "
                "each input as NAME:TYPE"
            )
    return {n: every for n in names if n not in out and every} | out


# ---------------------------------------------------------------------------
# handlers


def compile_model(args: argparse.Namespace):
    from lightspeed.api import load as load_model
    from lightspeed.api import quantize
    from lightspeed.ops import AutoOptions

    graph = load_model(
        args.model,
        input_shape=parse_input_shapes(args.input_shape),
        weights=getattr(args, "weights", None),
    )
    cal = None
    if args.calibration:
        cal = load_array_file(args.calibration, list(graph.inputs), "calibration")
    opts = AutoOptions()
    if args.weight_bits or args.frac_bits:
        opts = AutoOptions(
            weight_bits=args.weight_bits or opts.weight_bits,
            frac_bits=args.frac_bits or opts.frac_bits,
        )
    import numpy as np

    labels = None
    if args.labels:
        labels = np.asarray(load_array_file(args.labels, ["labels"], "labels")["labels"])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}")
        q = quantize(
            graph, precision=args.precision, calibration=cal, config=args.config, options=opts,
            labels=labels, budget=args.budget, search_cost=args.search_cost, progress=print,
            input_types=parse_input_types(args.input_type, list(graph.inputs)),
        )  # fmt: skip
    source = {"model": str(args.model), "precision": args.precision, "config": args.config}
    if getattr(args, "weights", None):
        source["weights"] = str(args.weights)
    if "search" in q.stats:
        source["search"] = q.stats["search"]
    if args.input_type:
        source["input_type"] = list(args.input_type)
    q.save(args.output, source=source)
    return q


def cmd_compile(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lightspeed.quantize.report import render_report

    q = compile_model(args)
    if not args.quiet:
        render_report(q.report(), Console(width=140))
    print(f"compiled model written to {args.output}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from lightspeed.fixed import to_float
    from lightspeed.quantize import load_compiled

    q = load_compiled(args.compiled)
    inputs = load_array_file(args.input, q.input_names, "input")
    env = q.run(inputs, trace=bool(args.trace))
    save_array_file(args.output, {t: env[t].float() for t in q.output_names})
    if args.trace:
        from lightspeed.emulate import run_float

        flt = run_float(q.graph, inputs, keep_all=True)
        d = Path(args.trace)
        d.mkdir(parents=True, exist_ok=True)
        for name, fx in env.items():
            safe = name.replace("/", "_")
            np.savez(
                d / f"{safe}.npz", fixed=to_float(fx.m, fx.t), ints=np.asarray(fx.m, dtype=np.int64),
                float=flt[name], type=str(fx.t),
            )  # fmt: skip
        print(f"trace of {len(env)} tensors written to {d}")
    n = next(iter(inputs.values())).shape[0]
    print(f"predicted {n} samples -> {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lightspeed.quantize import load_compiled
    from lightspeed.quantize.report import render_report

    q = load_compiled(args.compiled)
    rep = q.report()
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        render_report(rep, Console(width=140))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lightspeed.frontends.qonnx_export import export_qonnx
    from lightspeed.quantize import load_compiled

    q = load_compiled(args.compiled)
    export_qonnx(q, args.output)
    print(f"QONNX model written to {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lightspeed.demo import run_demo

    run_demo(Path(args.workdir), firmware=not args.no_firmware)
    return 0
