"""Firmware directories: generate one from a quantized model, load and verify one.

Layout of FWDIR::

    manifest.json     format tag, target, model hash, ports, latency, options, file hashes
    README.md         ports, widths, latency, how to instantiate
    model/            the compiled model it was generated from (for --check)
    rtl/<top>.v       (verilog target) the design
    hls/...           (hls target) the Vitis HLS project
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightspeed.__about__ import __version__
from lightspeed.errors import ArtifactError
from lightspeed.files import atomic_dir
from lightspeed.firmware.config import TARGETS, FirmwareOptions
from lightspeed.fixed import FixedType, parse_type
from lightspeed.quantize.model import QuantizedModel

FORMAT = "lightspeed-firmware"
VERSION = 1


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


@dataclass
class Port:
    tensor: str
    port: str
    type: FixedType
    shape: tuple[int, ...]

    @property
    def count(self) -> int:
        c = 1
        for d in self.shape:
            c *= d
        return c

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensor": self.tensor,
            "port": self.port,
            "type": str(self.type),
            "shape": list(self.shape),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Port:
        return Port(d["tensor"], d["port"], parse_type(d["type"]), tuple(d["shape"]))


@dataclass
class FirmwareDir:
    """A loaded, verified firmware directory."""

    path: Path
    manifest: dict[str, Any]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def top(self) -> str:
        return self.manifest["top"]

    @property
    def inputs(self) -> list[Port]:
        return [Port.from_dict(p) for p in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[Port]:
        return [Port.from_dict(p) for p in self.manifest["outputs"]]

    @property
    def latency(self) -> int:
        return int(self.manifest.get("latency", 0))

    @property
    def ii(self) -> int:
        """Clocks between input vectors (1 unless a layer has a reuse factor)."""
        return int(self.manifest.get("ii", 1))

    @property
    def clock_period(self) -> float:
        return float(self.manifest["options"]["clock_period"])

    @property
    def model_hash(self) -> str:
        return self.manifest["model_hash"]

    def file(self, key: str) -> Path:
        return self.path / self.manifest["files"][key]["path"]

    def read(self, key: str) -> str:
        return self.file(key).read_text()

    def model(self):
        """The compiled model stored with the firmware."""
        from lightspeed.quantize import load_compiled

        return load_compiled(self.path / "model")

    def check_model(self, q: QuantizedModel) -> None:
        from lightspeed.artifact import model_hash

        h = model_hash(q)
        if h != self.model_hash:
            raise ArtifactError(
                f"{self.path} was generated from model {self.model_hash}, but the given model is {h}; "
                "regenerate it with `lightspeed firmware MODEL -o FWDIR`"
            )


def load_fwdir(path: str | Path, target: str | None = None) -> FirmwareDir:
    """Open FWDIR and verify its manifest and file hashes (clear error on any mismatch)."""
    p = Path(path)
    mf = p / "manifest.json"
    if not mf.exists():
        hint = ""
        if (p / "manifest.json").exists() or (p / "params.npz").exists():
            hint = " (that looks like a compiled model; run `lightspeed firmware` on it first)"
        raise ArtifactError(f"{p} is not a lightspeed firmware directory (no manifest.json){hint}")
    try:
        m = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{mf} is not valid JSON ({exc}); regenerate the firmware") from None
    if m.get("format") != FORMAT:
        what = (
            "a compiled model; run `lightspeed firmware` on it first"
            if m.get("format") == "lightspeed-compiled"
            else "not a firmware directory"
        )
        raise ArtifactError(f"{p} is {what}")
    if m.get("version", 0) > VERSION:
        raise ArtifactError(
            f"{p} was written by a newer lightspeed (format v{m.get('version')}); upgrade"
        )
    for key, f in m.get("files", {}).items():
        fp = p / f["path"]
        if not fp.exists():
            raise ArtifactError(f"{p}: {f['path']} is missing; regenerate the firmware")
        if _sha(fp.read_bytes()) != f["sha"]:
            raise ArtifactError(
                f"{p}: {f['path']} ({key}) was modified after generation and no longer matches the "
                "manifest; regenerate it with `lightspeed firmware`"
            )
    fw = FirmwareDir(p, m)
    if target is not None and fw.target != target:
        raise ArtifactError(
            f"{p} holds a {fw.target} project, but this needs firmware generated with --target {target}"
            + (
                " (synthesize HLS projects with `vitis_hls -f hls/build.tcl`)"
                if fw.target == "hls"
                else ""
            )
        )
    mdir = p / "model"
    if mdir.exists():
        mm = json.loads((mdir / "manifest.json").read_text())
        if mm.get("model_hash") != fw.model_hash:
            raise ArtifactError(
                f"{p}: the stored model ({mm.get('model_hash')}) does not match the firmware "
                f"({fw.model_hash}); regenerate it"
            )
    return fw


def generate(
    q,
    outdir: str | Path,
    target: str = "verilog",
    options: FirmwareOptions | None = None,
    overwrite: bool = True,
) -> FirmwareDir:
    """Write firmware for quantized model ``q`` into ``outdir``; returns the loaded directory."""
    from lightspeed.artifact import model_hash
    from lightspeed.errors import ConfigError

    if target not in TARGETS:
        raise ConfigError(f"unknown firmware target {target!r}; use one of {', '.join(TARGETS)}")
    opts = options or FirmwareOptions()
    if target == "hls" and opts.io == "stream":
        raise ConfigError(
            "--io stream is implemented for --target verilog only (the HLS writer is fully "
            "parallel); use --target verilog --io stream, or --target hls --io parallel"
        )
    outdir = Path(outdir)
    if outdir.exists() and any(outdir.iterdir()):
        if not (outdir / "manifest.json").exists():
            raise ArtifactError(
                f"{outdir} exists, is not empty and is not a firmware directory; choose a new one"
            )
        if not overwrite:
            raise ArtifactError(
                f"{outdir} already holds firmware; pass overwrite=True (CLI: --force)"
            )
    with atomic_dir(outdir) as tmp:
        files: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if target == "verilog" and opts.io == "stream":
            from lightspeed.firmware.verilog.stream import stream_project

            text, ports_in, ports_out, latency, extra = stream_project(q, opts, _header(q, opts))
            (tmp / "rtl").mkdir()
            (tmp / "rtl" / f"{opts.top}.v").write_text(text)
            files["rtl"] = f"rtl/{opts.top}.v"
            ins = [Port(t, d["port"], d["type"], d["shape"]) for t, d in ports_in.items()]
            outs = [Port(t, d["port"], d["type"], d["shape"]) for t, d in ports_out.items()]
        elif target == "verilog":
            from lightspeed.firmware.verilog import build_design, write_verilog

            design = build_design(q, opts)
            text = write_verilog(design, header=_header(q, opts))
            (tmp / "rtl").mkdir()
            (tmp / "rtl" / f"{opts.top}.v").write_text(text)
            files["rtl"] = f"rtl/{opts.top}.v"
            ins = [Port(t, d["port"], d["type"], d["shape"]) for t, d in design.inputs.items()]
            outs = [Port(t, d["port"], d["type"], d["shape"]) for t, d in design.outputs.items()]
            latency = design.latency
            extra["ii"] = design.ii
            from lightspeed.firmware.estimate import estimate_design

            extra["estimate"] = estimate_design(design).to_dict()
        else:
            from lightspeed.firmware.hls import write_hls

            written = write_hls(q, tmp / "hls", opts)
            files.update({k: f"hls/{v}" for k, v in written.items()})
            from lightspeed.firmware.verilog import port_name

            ins = [
                Port(t, port_name("in", t), q.input_types[t], tuple(q.graph.inputs[t]))
                for t in q.input_names
            ]
            outs = [
                Port(t, port_name("out", t), q.tensor_types[t], tuple(q.graph.shapes[t]))
                for t in q.output_names
            ]
            latency = 0
        q.save(tmp / "model")
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "target": target,
            "top": opts.top,
            "model_hash": model_hash(q),
            "model_name": q.graph.name,
            "latency": latency,
            "options": opts.to_dict(),
            "inputs": [p.to_dict() for p in ins],
            "outputs": [p.to_dict() for p in outs],
            "files": {
                k: {"path": v, "sha": _sha((tmp / v).read_bytes())} for k, v in files.items()
            },
            **extra,
        }
        (tmp / "README.md").write_text(readme(manifest))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return load_fwdir(outdir)


def _header(q: QuantizedModel, opts: FirmwareOptions) -> str:
    from lightspeed.artifact import model_hash

    return (
        f"// Generated by lightspeed {__version__} from model '{q.graph.name}' "
        f"(hash {model_hash(q)}).\n"
        "// "
        + ("Streaming, one pixel per clock" if opts.io == "stream" else _arch_line(q, opts))
        + f", clock period {opts.clock_period:g} ns, multipliers={opts.multipliers}.\n"
        "// Bit-exact with the lightspeed emulator; see README.md for ports and latency.\n"
    )


def _arch_line(q: QuantizedModel, opts: FirmwareOptions) -> str:
    from lightspeed.firmware.reuse import layer_factors

    f = layer_factors(q, opts)
    if not f:
        return "Fully parallel, II=1"
    rfs = ", ".join(f"{k}={v}" for k, v in f.items())
    return f"Reuse factors {rfs}: one vector every {max(f.values())} clocks (II={max(f.values())})"


def readme(m: dict[str, Any]) -> str:
    period = m["options"]["clock_period"]
    lines = [f"# {m['top']} — generated by lightspeed", ""]
    lines.append(f"Model `{m['model_name']}` (hash `{m['model_hash']}`), target **{m['target']}**.")
    lines.append("")
    if m["target"] == "verilog" and m.get("stream"):
        from lightspeed.firmware.verilog.stream import stream_readme

        lines += stream_readme(m)
    elif m["target"] == "verilog":
        lat = m["latency"]
        ii = int(m.get("ii", 1))
        lines += [
            f"* Latency: **{lat} clock cycles** ({lat * period:g} ns at {period:g} ns / "
            f"{1000 / period:.0f} MHz); initiation interval {ii} "
            + (
                "(a new vector every clock)."
                if ii == 1
                else f"(reuse factor: present a vector only while `ready_in` is high, every {ii} "
                "clocks; `valid_in` is ignored otherwise)."
            ),
            "* Fully parallel datapath, pipeline registers after every layer and wherever the "
            "adder tree would exceed the clock period. Data registers have no reset; "
            "`valid_out` follows `valid_in` through a reset-able shift register.",
            "",
            "## Ports",
            "",
            "| port | direction | width | content |",
            "|---|---|---|---|",
            "| `clk` | in | 1 | clock, rising edge |",
            "| `rst` | in | 1 | synchronous reset of the valid pipeline |",
            "| `valid_in` | in | 1 | the input buses hold a vector this cycle |",
        ]
        if ii > 1:
            lines.append(
                f"| `ready_in` | out | 1 | high one clock in {ii}: the design takes a vector |"
            )
        for p in m["inputs"]:
            t = parse_type(p["type"])
            n = _count(p["shape"])
            lines.append(
                f"| `{p['port']}` | in | {n * t.width} | tensor `{p['tensor']}` shape {tuple(p['shape'])}: "
                f"{n} x `{t}`; element i (C order) at bits `[i*{t.width} +: {t.width}]` |"
            )
        lines.append(
            f"| `valid_out` | out | 1 | the output buses hold a result ({lat} cycles after its input) |"
        )
        for p in m["outputs"]:
            t = parse_type(p["type"])
            n = _count(p["shape"])
            lines.append(
                f"| `{p['port']}` | out | {n * t.width} | tensor `{p['tensor']}` shape {tuple(p['shape'])}: "
                f"{n} x `{t}`; element i at bits `[i*{t.width} +: {t.width}]` |"
            )
        lines += [
            "",
            "Elements are two's complement (`ap_fixed`) or plain binary (`ap_ufixed`) integers: "
            "the value is the integer times 2^-F, F = width - integer bits.",
            "",
            "## Instantiation",
            "",
            "```verilog",
            f"{m['top']} u_nn (",
            "  .clk(clk), .rst(rst), .valid_in(in_valid),"
            + (" .ready_in(in_ready)," if ii > 1 else ""),
            *[f"  .{p['port']}({p['port']}_bus)," for p in m["inputs"]],
            "  .valid_out(out_valid),",
            ",\n".join(f"  .{p['port']}({p['port']}_bus)" for p in m["outputs"]),
            ");",
            "```",
            "",
            "## Verify and cost it",
            "",
            "```",
            "lightspeed sim FWDIR --input X.npy --output Y.npy --check   # Verilator, bit-exact vs emulator",
            "lightspeed synth FWDIR --part xcvu9p                          # Yosys synth_xilinx",
            "lightspeed synth FWDIR --estimate                             # instant analytic estimate",
            "```",
        ]
        est = m.get("estimate")
        if est:
            lines += [
                "",
                f"Analytic estimate: ~{est['lut']:.0f} LUT, {est['ff']:.0f} FF, {est['dsp']:.0f} DSP.",
            ]
    else:
        lines += [
            "Vitis HLS C++ project in `hls/`: `firmware/` (top function with `ap_fixed` types, "
            "pipeline/unroll/partition pragmas), `tb/` (testbench reading input vectors), `build.tcl`.",
            "",
            "```",
            "cd hls && vitis_hls -f build.tcl          # C simulation, synthesis (needs Vitis HLS)",
            "lightspeed sim FWDIR --input X.npy --check # C simulation with g++ (ap_types headers)",
            "```",
        ]
    return "\n".join(lines) + "\n"


def _count(shape) -> int:
    c = 1
    for d in shape:
        c *= int(d)
    return c
