"""`lightspeed firmware | sim | synth`: generate, simulate and synthesize firmware.

Only argparse at import time; handlers import the heavy parts lazily.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lightspeed.files import load_array_file, save_array_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "firmware",
        help="generate Verilog or a Vitis HLS project from a compiled model",
        description=(
            "Generate firmware from a compiled model directory (lightspeed compile ... -o OUTDIR): "
            "pipelined Verilog (fully parallel, or time-multiplexed with --reuse; bit-exact with the "
            "emulator) or a Vitis HLS C++ "
            "project. FWDIR gets a README.md (ports, widths, latency, instantiation) and a manifest "
            "binding it to the model."
        ),
    )
    p.add_argument("model", nargs="?", help="compiled model directory (from `lightspeed compile`)")
    p.add_argument("-o", "--output", help="firmware directory to write (FWDIR)")
    p.add_argument(
        "--target",
        choices=["verilog", "hls"],
        default="verilog",
        help="verilog: synthesizable Verilog-2001; hls: Vitis HLS C++ project (default verilog)",
    )
    p.add_argument(
        "--clock-period",
        default="5",
        help="target clock period in ns (or e.g. 250MHz); sets how much logic goes between "
        "pipeline registers (default 5 ns = 200 MHz)",
    )
    p.add_argument(
        "--multipliers",
        choices=["auto", "dsp", "lut"],
        default="auto",
        help="constant products: dsp writes '*' (DSP slices), lut writes shift-and-add "
        "(canonical signed digits), auto uses shift-and-add up to 3 non-zero digits (default)",
    )
    p.add_argument(
        "--io",
        choices=["parallel", "stream"],
        default="parallel",
        help="parallel: every output in its own hardware, II=1 (default); stream: CNNs take one "
        "pixel per clock through line buffers, one datapath per conv layer (Verilog target)",
    )
    p.add_argument(
        "--reuse",
        action="append",
        metavar="N|LAYER=N",
        help="reuse factor: dense layers compute their outputs in N groups on shared "
        "multipliers, one group per clock (a vector every N clocks, ~1/N of the multipliers "
        "and adders); N for every dense layer, LAYER=N for one (repeatable; default 1, or "
        "the layer's `reuse` in the compile config)",
    )
    p.add_argument(
        "--top",
        default="lightspeed_top",
        help="top module / function name (default lightspeed_top)",
    )
    p.add_argument(
        "--part",
        default="xcvu9p",
        help="FPGA part the design must fit (default xcvu9p); a graph-level estimate checks it "
        "before anything is written",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write the design even when the estimate says it does not fit the part",
    )
    p.add_argument(
        "--tools",
        action="store_true",
        help="only list the simulation/synthesis tools found (Verilator, Yosys, g++, ap_types)",
    )
    p.set_defaults(func=cmd_firmware)

    s = sub.add_parser(
        "sim",
        help="simulate firmware (Verilator RTL or HLS C-sim) and compare with the emulator",
        description=(
            "Build FWDIR's RTL with Verilator (cached by content hash) and stream the input vectors "
            "through it one per clock, measuring latency and initiation interval; for an HLS project "
            "compile its C simulation with g++. --check compares every output bit with the emulator."
        ),
    )
    s.add_argument("fwdir", help="firmware directory (from `lightspeed firmware`)")
    s.add_argument(
        "--input", required=True, help="input vectors: .npy (one input) or .npz keyed by input name"
    )
    s.add_argument("--output", help="write the firmware's outputs here (.npy or .npz)")
    s.add_argument(
        "--check",
        action="store_true",
        help="compare with the emulator bit for bit; exit 1 and print the first mismatches if any",
    )
    s.add_argument(
        "--model",
        help="compiled model to check against (default: the copy stored in FWDIR); "
        "must be the model FWDIR was generated from",
    )
    s.add_argument("--show", type=int, default=5, help="how many mismatches to print (default 5)")
    s.add_argument(
        "--timeout", type=float, default=None, help="give up on the simulation run after S seconds"
    )
    s.add_argument(
        "--ap-types",
        metavar="DIR",
        help="HLS projects: directory with ap_fixed.h (default: XILINX_HLS/XILINX_VITIS, "
        "XILINX_AP_INCLUDE, or the headers in an installed hls4ml wheel)",
    )
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=cmd_sim)

    y = sub.add_parser(
        "synth",
        help="resource report: Yosys synth_xilinx (LUT/FF/DSP/CARRY/BRAM) or an instant estimate",
        description=(
            "Synthesize FWDIR's Verilog with Yosys synth_xilinx for the part's family and report LUT, "
            "FF, DSP, CARRY and BRAM, the utilisation of the part and the latency in cycles and ns. "
            "Whole models can take many minutes (use --timeout; Ctrl-C stops it); --estimate gives an "
            "instant analytic estimate instead. Results are cached by content hash."
        ),
    )
    y.add_argument("fwdir", help="firmware directory (Verilog target)")
    y.add_argument(
        "--part",
        default="xcvu9p",
        help="FPGA part: xcvu9p, xcvu13p, xcvu7p, xcu250, xcu50, xczu9eg, xcku15p, xcku115, "
        "xcvu095, xc7vx690t, xc7a100t (default xcvu9p)",
    )
    y.add_argument(
        "--estimate", action="store_true", help="analytic estimate only (no Yosys, instant)"
    )
    y.add_argument("--timeout", type=float, default=None, help="stop Yosys after S seconds")
    y.add_argument(
        "--nodsp", action="store_true", help="forbid DSP slices (all arithmetic in LUTs)"
    )
    y.add_argument(
        "--no-cache", action="store_true", help="rerun Yosys even if a cached result exists"
    )
    y.add_argument("--json", action="store_true", help="print the report as JSON")
    y.set_defaults(func=cmd_synth)


def _console():
    from rich.console import Console

    return Console(stderr=True)


class _Status:
    """A rich spinner whose text a progress callback updates (no-op when not a terminal)."""

    def __init__(self, text: str) -> None:
        self.console = _console()
        self.text = text
        self.status: Any = None

    def __enter__(self):
        if self.console.is_terminal:
            self.status = self.console.status(self.text)
            self.status.__enter__()
        return self

    def update(self, msg: str) -> None:
        if self.status is not None:
            self.status.update(msg)

    def __exit__(self, *exc: Any) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)


def cmd_firmware(args: argparse.Namespace) -> int:
    from lightspeed.errors import InputError

    if args.tools:
        from lightspeed.firmware.tools import tool_report

        for k, v in tool_report().items():
            print(f"{k:10} {v}")
        return 0
    if not args.model or not args.output:
        raise InputError(
            "give the compiled model directory and -o FWDIR (see lightspeed firmware --help)"
        )
    from lightspeed.firmware import generate
    from lightspeed.quantize import load_compiled

    q = load_compiled(args.model)
    fw = generate(
        q,
        args.output,
        target=args.target,
        clock_period=args.clock_period,
        multipliers=args.multipliers,
        top=args.top,
        overwrite=True,
        part=args.part,
        force=args.force,
        io=args.io,
        reuse=parse_reuse(args.reuse),
    )
    stream = fw.manifest.get("stream")
    if stream:
        est = fw.manifest.get("estimate", {})
        print(
            f"Streaming Verilog written to {fw.path}/rtl/{fw.top}.v: {stream['pixels_in']} pixel "
            f"beats per image (II={stream['ii']} cycles), {fw.latency} cycles from the last beat "
            f"to the result; estimate ~{est.get('lut')} LUT, {est.get('ff')} FF, {est.get('dsp')} DSP"
        )
    elif fw.target == "verilog":
        est = fw.manifest.get("estimate", {})
        print(
            f"Verilog written to {fw.path}/rtl/{fw.top}.v: latency {fw.latency} cycles "
            f"({fw.latency * fw.clock_period:g} ns at {1000 / fw.clock_period:.0f} MHz), II={fw.ii}; "
            f"estimate ~{est.get('lut')} LUT, {est.get('ff')} FF, {est.get('dsp')} DSP"
        )
    else:
        print(f"Vitis HLS project written to {fw.path}/hls (top function {fw.top})")
    print(f"see {fw.path}/README.md")
    return 0


def parse_reuse(values: list[str] | None) -> int | dict[str, int]:
    """``--reuse 4`` -> 4; ``--reuse fc1=4 --reuse fc2=2`` -> {"fc1": 4, "fc2": 2}."""
    from lightspeed.errors import ConfigError

    if not values:
        return 1
    glob: int | None = None
    per: dict[str, int] = {}
    for v in values:
        name, _, num = v.rpartition("=")
        try:
            n = int(num)
        except ValueError:
            raise ConfigError(
                f"--reuse {v!r}: give a positive integer (--reuse 4) or LAYER=N (--reuse fc1=4)"
            ) from None
        if name:
            per[name] = n
        else:
            glob = n
    if glob is not None and per:
        raise ConfigError(
            "--reuse: give either one factor for every dense layer or LAYER=N per layer, not both"
        )
    return per if per else (glob or 1)


def cmd_sim(args: argparse.Namespace) -> int:
    from lightspeed.firmware import check, simulate_detail
    from lightspeed.firmware.project import load_fwdir

    fw = load_fwdir(args.fwdir)
    names = [p.tensor for p in fw.inputs]
    X = load_array_file(args.input, names, "input")
    q = None
    if args.model:
        from lightspeed.quantize import load_compiled

        q = load_compiled(args.model)
        fw.check_model(q)
    with _Status("building simulator") as st:
        if args.check:
            r = check(fw, X, q=q, progress=st.update, show=args.show, ap_types=args.ap_types)
        else:
            r = simulate_detail(
                fw, X, progress=st.update, timeout=args.timeout, ap_types=args.ap_types
            )
    if args.output:
        save_array_file(args.output, r["outputs"])
    n = int(next(iter(r["ints"].values())).shape[0])
    summary = {
        "vectors": n,
        "latency_cycles": r["latency"],
        "ii": r["ii"],
        "latency_ns": None if r["latency"] is None else r["latency"] * fw.clock_period,
        "build_seconds": round(r["build_seconds"], 2),
        "run_seconds": round(r["run_seconds"], 3),
        "cached_build": r["cached"],
    }
    if args.check:
        summary.update(
            exact=r["exact"], mismatched_values=r["mismatched_values"], mismatches=r["mismatches"]
        )
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        kind = "RTL (Verilator)" if fw.target == "verilog" else "HLS C simulation (g++)"
        line = f"{kind}: {n} vectors"
        if r["latency"] is not None:
            line += (
                f", latency {r['latency']} cycles ({summary['latency_ns']:g} ns), II {r['ii']:.2f}"
            )
        print(
            line + (" [cached build]" if r["cached"] else f" [built in {r['build_seconds']:.1f} s]")
        )
        if args.output:
            print(f"outputs written to {args.output}")
        if args.check:
            if r["exact"]:
                print(f"check: bit-exact with the emulator on all {n} vectors")
            else:
                print(
                    f"check: {r['mismatched_values']} output values differ from the emulator; first ones:"
                )
                for m in r["mismatches"]:
                    print(
                        f"  vector {m['vector']} output {m['output']}[{m['element']}]: firmware "
                        f"{m['firmware']} vs emulator {m['emulator']} (integers of {m['type']})"
                    )
    if args.check and not r["exact"]:
        return 1
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from lightspeed.firmware.parts import get_part
    from lightspeed.firmware.project import load_fwdir

    fw = load_fwdir(args.fwdir, target="verilog")
    part = get_part(args.part)
    if args.estimate:
        from lightspeed.firmware.config import FirmwareOptions
        from lightspeed.firmware.estimate import estimate_design
        from lightspeed.firmware.verilog import build_design

        opts = FirmwareOptions(**fw.manifest["options"])
        est = (
            fw.manifest["estimate"]  # streaming: stages + line buffers, written by generate
            if fw.manifest.get("stream")
            else estimate_design(build_design(fw.model(), opts)).to_dict()
        )
        rep: dict[str, Any] = {
            "source": "analytic estimate",
            "part": part.name,
            **{k: est[k] for k in ("lut", "ff", "dsp", "carry", "bram")},
            "utilisation": {
                "lut": 100 * est["lut"] / part.lut,
                "ff": 100 * est["ff"] / part.ff,
                "dsp": 100 * est["dsp"] / part.dsp,
                "bram": 0.0,
            },
            "per_layer": est["per_layer"],  # rows add up to the totals
        }
    else:
        from lightspeed.firmware.synth import synthesize

        with _Status("yosys synth_xilinx") as st:
            r = synthesize(
                fw,
                part=part.name,
                timeout=args.timeout,
                progress=st.update,
                nodsp=args.nodsp,
                use_cache=not args.no_cache,
            )
        rep = {"source": f"yosys synth_xilinx -family {part.family}", **r.to_dict()}
        rep.pop("cells", None) if not args.json else None
    rep["latency_cycles"] = fw.latency
    rep["clock_period_ns"] = fw.clock_period
    rep["latency_ns"] = fw.latency * fw.clock_period
    stream = fw.manifest.get("stream") or {}
    rep["ii"] = stream.get("ii", fw.ii) if stream else fw.ii  # streaming: cycles per image
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        _print_synth(rep, part)
    over = [
        f"{k.upper()} {v:.0f}% ({v / 100:.1f}x the {part.name}'s capacity)"
        for k, v in rep["utilisation"].items()
        if v > 100
    ]
    if over:
        print(
            f"lightspeed synth: error: the design does not fit {part.name}: {', '.join(over)}; "
            "use fewer bits, a larger part or --multipliers dsp/lut to rebalance",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_synth(rep: dict[str, Any], part) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"{rep['source']} — {part.name} ({part.description})"
    t = Table(title=title, min_width=len(title) + 2)  # a title must not wrap mid-name
    for col in ("resource", "used", f"% of {part.name}"):
        t.add_column(col, justify="right" if col != "resource" else "left")
    u = rep["utilisation"]
    t.add_row("LUT", str(rep["lut"]), f"{u['lut']:.2f}")
    t.add_row("FF", str(rep["ff"]), f"{u['ff']:.2f}")
    t.add_row("DSP", str(rep["dsp"]), f"{u['dsp']:.2f}")
    t.add_row("CARRY", str(rep["carry"]), "")
    t.add_row("BRAM (36Kb)", f"{rep['bram']:g}", f"{u['bram']:.2f}")
    if rep.get("srl"):
        t.add_row("SRL (in LUT sites)", str(rep["srl"]), "")
    Console().print(t)
    print(
        f"latency: {rep['latency_cycles']} cycles = {rep['latency_ns']:g} ns at "
        f"{rep['clock_period_ns']:g} ns ({1000 / rep['clock_period_ns']:.0f} MHz), II={rep.get('ii', 1)}"
        + (
            f"; Yosys took {rep['seconds']:.0f} s" + (" (cached)" if rep.get("cached") else "")
            if "seconds" in rep
            else ""
        )
    )
