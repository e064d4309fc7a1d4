"""Reuse factor benchmark: the zoo's 6-bit pruned jet tagger at RF 1, 2, 4, 8, 16.

For every reuse factor (``lightspeed firmware --reuse RF``, every dense layer) it
generates the Verilog, runs it in Verilator on test jets plus vectors over the whole
input range and checks every output bit against the emulator, measures latency and
II from the simulation, and synthesizes it with Yosys ``synth_xilinx`` for an xcvu9p
(``--yosys-timeout`` per design; a design Yosys does not finish in time is reported
with the analytic estimate only, marked ``"resources_from": "estimate"``).

    python benchmarks/reuse.py                       # RF 1 2 4 8 16, Yosys up to 20 min each
    python benchmarks/reuse.py --rf 8 16 --yosys-timeout 0   # estimate only
    python benchmarks/reuse.py --nodsp 1 4 16        # also Yosys -nodsp (products in LUTs)

Writes benchmarks/results/reuse.json and benchmarks/results/reuse.png (LUT and DSP vs RF).
Rows already in reuse.json for the same Verilog (same hash) keep their Yosys result.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "results"
PART = "xcvu9p"
MODEL = "jet_tagger_q6"


def vectors(q, n_test: int) -> np.ndarray:
    """Test jets, then as many uniform over the input type's range (saturation corners)."""
    from lightspeed import zoo

    rec = zoo.recipe(MODEL)
    test = zoo.default_split(MODEL)[1]
    x = np.asarray(rec.inputs(test), dtype=np.float64)[:n_test]
    t = q.input_types[q.input_names[0]]
    wide = np.random.default_rng(0).uniform(t.min_value, t.max_value, x.shape)
    return np.concatenate([x, wide])


def run_rf(
    q, rf: int, x: np.ndarray, work: Path, timeout: float, old: dict | None, nodsp: bool = False
) -> dict:
    from lightspeed import firmware
    from lightspeed.errors import LightspeedError

    t0 = time.perf_counter()
    fw = firmware.generate(q, work / f"rf{rf}", reuse=rf)
    row: dict[str, Any] = {"rf": rf, "generate_seconds": round(time.perf_counter() - t0, 2)}
    row["rtl_sha"] = fw.manifest["files"]["rtl"]["sha"]
    row["latency_cycles"] = fw.latency
    row["ii_design"] = fw.ii
    est = fw.manifest["estimate"]
    row["estimate"] = {k: est[k] for k in ("lut", "ff", "dsp")}
    r = firmware.check(fw, x, q=q)
    row["sim"] = {
        "vectors": r["vectors"],
        "exact": r["exact"],
        "mismatched_values": r["mismatched_values"],
        "latency_cycles": r["latency"],
        "ii": r["ii"],
        "build_seconds": round(r["build_seconds"], 1),
    }
    if old and old.get("rtl_sha") == row["rtl_sha"] and "yosys" in old:
        row["yosys"] = old["yosys"]  # identical Verilog: keep the earlier run
    elif timeout > 0:
        try:
            rep = firmware.synthesize(fw, part=PART, timeout=timeout)
            row["yosys"] = {k: getattr(rep, k) for k in ("lut", "ff", "dsp", "carry", "srl")}
            row["yosys"]["seconds"] = round(rep.seconds, 1)
        except LightspeedError as exc:
            row["yosys"] = {"error": str(exc).splitlines()[0]}
    if nodsp and old and old.get("rtl_sha") == row["rtl_sha"] and "yosys_nodsp" in old:
        row["yosys_nodsp"] = old["yosys_nodsp"]
    elif nodsp and timeout > 0:  # every product in LUTs: what the design costs without DSPs
        try:
            rep = firmware.synthesize(fw, part=PART, timeout=timeout, nodsp=True)
            row["yosys_nodsp"] = {k: getattr(rep, k) for k in ("lut", "ff", "dsp", "carry")}
            row["yosys_nodsp"]["seconds"] = round(rep.seconds, 1)
        except LightspeedError as exc:
            row["yosys_nodsp"] = {"error": str(exc).splitlines()[0]}
    elif old and "yosys_nodsp" in old and old.get("rtl_sha") == row["rtl_sha"]:
        row["yosys_nodsp"] = old["yosys_nodsp"]
    got = "lut" in row.get("yosys", {})
    row["resources_from"] = "yosys" if got else "estimate"
    src = row["yosys"] if got else row["estimate"]
    row["lut"], row["ff"], row["dsp"] = src["lut"], src["ff"], src["dsp"]
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rf = [r["rf"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rf, [r["lut"] for r in rows], "o-", label="LUT")
    ax.plot(rf, [r["ff"] for r in rows], "s-", label="FF")
    ax.plot(rf, [55 * r["dsp"] for r in rows], "^-", label="55 x DSP")
    nd = [(r["rf"], r["yosys_nodsp"]["lut"]) for r in rows if "lut" in r.get("yosys_nodsp", {})]
    if nd:
        ax.plot(*zip(*nd, strict=True), "D--", label="LUT with -nodsp (no DSP)")
    base = rows[0]["lut"] + 55 * rows[0]["dsp"]
    ax.plot(rf, [base / v for v in rf], "k:", label="(LUT + 55 DSP at RF 1) / RF")
    for r in rows:
        if r["resources_from"] == "estimate":
            ax.annotate("est.", (r["rf"], r["lut"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(rf, [str(v) for v in rf])
    ax.set_xlabel("reuse factor (II, clocks per vector)")
    ax.set_ylabel("resources (Yosys synth_xilinx, xcvu9p)")
    ax.set_title(f"{MODEL}: resources vs reuse factor")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    lines = [
        "| RF | II (measured) | latency (cycles) | bit-exact | LUT | FF | DSP | LUT + 55 DSP | from "
        "| LUT, FF with `-nodsp` |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        s = r["sim"]
        lines.append(
            f"| {r['rf']} | {s['ii']:g} | {s['latency_cycles']} | "
            f"{'yes' if s['exact'] else 'NO'} ({s['vectors']} vectors) | {r['lut']:,} | "
            f"{r['ff']:,} | {r['dsp']:,} | {r['lut'] + 55 * r['dsp']:,} | {r['resources_from']} | "
            + (
                f"{r['yosys_nodsp']['lut']:,}, {r['yosys_nodsp']['ff']:,} |"
                if "lut" in r.get("yosys_nodsp", {})
                else "- |"
            )
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rf", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--yosys-timeout", type=float, default=1200.0)
    ap.add_argument("--vectors", type=int, default=5000)
    ap.add_argument("--work", default="/tmp/lightspeed_reuse_bench")
    ap.add_argument(
        "--nodsp", type=int, nargs="*", default=[], help="also synthesize these RFs with -nodsp"
    )
    args = ap.parse_args()

    from lightspeed import zoo

    q = zoo.quantize(MODEL)
    x = vectors(q, args.vectors)
    path = RESULTS / "reuse.json"
    old = {r["rf"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    rows = dict(old)
    for rf in args.rf:
        rows[rf] = run_rf(
            q, rf, x, Path(args.work), args.yosys_timeout, old.get(rf), rf in args.nodsp
        )
        print(json.dumps(rows[rf]), flush=True)
        out = sorted(rows.values(), key=lambda r: r["rf"])
        res = {
            "benchmark": "reuse factor",
            "model": MODEL,
            "part": PART,
            "clock_period_ns": 5.0,
            "command": "python benchmarks/reuse.py",
            "machine": platform.platform(),
            "rows": out,
        }
        path.write_text(json.dumps(res, indent=1))
    out = sorted(rows.values(), key=lambda r: r["rf"])
    plot(out, RESULTS / "reuse.png")
    print(table(out))


if __name__ == "__main__":
    main()
