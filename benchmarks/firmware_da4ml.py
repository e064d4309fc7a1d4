"""lightspeed vs da4ml 0.6, one dense layer at a time, both through the same Yosys.

Called by ``python benchmarks/firmware.py --da4ml``. For each layer of the
16->64->32->32->5 jet tagger with 6-bit weights (the shipped float tagger, input
scaling unfolded, weights and biases rounded to ap_fixed<6,1>: integers in [-32, 31]
at scale 2^-5), and for the same matrices magnitude-pruned to 70% zeros per layer:

* lightspeed: a one-node IR graph (``dense``), quantized so its integer weights are
  exactly these; Verilog from ``firmware.generate`` (defaults: shared products and
  shared adder graphs, ``--multipliers auto``, 5 ns);
* da4ml: the same integers through its CMVM solver and pipelined Verilog generator
  (``_da4ml_peer.py``, run by da4ml's own venv, ``DA4ML_PYTHON``);

both synthesized by ``lightspeed.firmware.synth.run_yosys`` (``synth_xilinx -family
xcup`` for an xcvu9p). Inputs: ap_fixed<16,6> into the first layer, ReLU outputs
ap_ufixed<6,0> into the others. Two accumulator settings:

* ``exact``: nothing rounded, the output is the exact sum (lightspeed ``trained``
  typing; da4ml's natural form). Both compute the same function: checked on random
  inputs (lightspeed's emulator vs da4ml's own bit-exact interpreter).
* ``hls4ml``: hls4ml's default ap_fixed<16,6> accumulator and result. lightspeed
  follows hls4ml's contract (each product cast to the accumulator, which truncates
  products finer than 2^-10); da4ml has no such contract and casts the exact sum
  once (``quantize(x @ W + b, 1, 5, 10, WRAP, TRN)``). The functions differ by a few
  LSBs; the mismatch is reported, not hidden.

Latency is counted the same way for both: clock edges from the input port to the
output port. da4ml registers its inputs (one of its cycles); lightspeed expects
registered inputs and registers its outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_T = "ap_fixed<6,1>"
WF = 5  # fractional bits of ap_fixed<6,1>
RELU_T = "ap_ufixed<6,0>"
FIRST_T = "ap_fixed<16,6>"
HLS4ML_T = "ap_fixed<16,6>"
KIF = {"ap_fixed<16,6>": (1, 5, 10), "ap_ufixed<6,0>": (0, 0, 6)}  # da4ml's (sign, int, frac)
LATENCY_CUTOFF = 5  # da4ml adder levels per pipeline stage (its documented example value)
SPARSITY = 0.7
CASES = ("exact", "exact-pruned", "hls4ml", "hls4ml-pruned")
NETWORK_CASES = ("exact-network", "exact-pruned-network")
PEER = Path(__file__).resolve().parent / "_da4ml_peer.py"


def peer_python() -> Path:
    return Path(os.environ.get("DA4ML_PYTHON", "/work/peers/da4ml/bin/python"))


def peer_version() -> str:
    r = subprocess.run(
        [str(peer_python()), "-c", "import da4ml; print(da4ml.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r.stdout.strip() or f"unavailable: {r.stderr.strip().splitlines()[-1:]}"


# ---------------------------------------------------------------------------
# the matrices


def tagger_layers(graph) -> list[dict[str, Any]]:
    """Each dense layer of the float tagger as 6-bit integers (round to nearest, saturate)."""
    lo, hi = -(2**WF), 2**WF - 1
    out = []
    for n in graph.nodes:
        if n.op != "dense":
            continue
        w = n.params["weight"]
        out.append({
            "name": n.name,
            "w_float": w,
            "w": np.clip(np.round(w * 2**WF), lo, hi).astype(np.int64),
            "b": np.clip(np.round(n.params["bias"] * 2**WF), lo, hi).astype(np.int64),
            "in_t": FIRST_T if not out else RELU_T,
        })  # fmt: skip
    return out


def prune(w: np.ndarray, w_float: np.ndarray, sparsity: float) -> np.ndarray:
    """Magnitude pruning: zero the ``sparsity`` fraction of weights smallest in |float value|."""
    k = round(sparsity * w.size)
    order = np.argsort(np.abs(w_float), axis=None, kind="stable")
    p = w.copy().ravel()
    p[order[:k]] = 0
    return p.reshape(w.shape)


def test_inputs(in_t: str, n: int, fan_in: int, seed: int = 0) -> np.ndarray:
    """Random points of the input type's grid, the two extreme vectors included."""
    k, i, f = KIF[in_t]
    lo, hi = (-(2 ** (i + f)) if k else 0), 2 ** (i + f) - 1
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(n, fan_in))
    x[0], x[1] = lo, hi
    return x.astype(np.float64) * 2.0**-f


# ---------------------------------------------------------------------------
# lightspeed side


def lightspeed_layer(w: np.ndarray, b: np.ndarray, in_t: str, accum: str):
    import lightspeed
    from lightspeed.ir import Graph, Node, infer_shapes

    node = Node("fc", "dense", ["x"], ["y"], {}, {"weight": w * 2.0**-WF, "bias": b * 2.0**-WF})
    g = infer_shapes(Graph("layer", {"x": (w.shape[0],)}, ["y"], [node]))
    layers = {"fc": {"weight": WEIGHT_T, "bias": WEIGHT_T}}
    if accum == "exact":
        q = lightspeed.quantize(g, "trained", config={"layers": layers}, input_types={"x": in_t})
    else:
        q = lightspeed.quantize(g, HLS4ML_T, config={"inputs": {"x": in_t}, "layers": layers})
    assert np.array_equal(q.qparams["fc"]["weight"], w), "weights are not the chosen integers"
    return q


def yosys_row(rep) -> dict[str, Any]:
    return {
        "lut": rep.lut + rep.srl + rep.lutram,  # LUT sites, as lightspeed synth reports
        "ff": rep.ff,
        "dsp": rep.dsp,
        "carry": rep.carry,
        "seconds": round(rep.seconds, 1),
        "cached": rep.cached,
    }


def run_lightspeed(q, workdir: Path, x: np.ndarray, timeout: float) -> dict[str, Any]:
    """Verilog, latency, emulator outputs on ``x`` and (``timeout`` > 0) Yosys counts."""
    from lightspeed import firmware
    from lightspeed.errors import LightspeedError

    t0 = time.perf_counter()
    fw = firmware.generate(q, workdir, force=True)
    row: dict[str, Any] = {
        "generate_seconds": round(time.perf_counter() - t0, 2),
        "latency_cycles": fw.latency,
        "estimate_lut": int(fw.manifest["estimate"]["lut"]),
        "result_type": str(q.precision[q.graph.nodes[-1].name]["result"]),
        "y": q.predict(x),
    }
    if timeout <= 0:
        return row
    try:
        row["yosys"] = yosys_row(firmware.synthesize(fw, part="xcvu9p", timeout=timeout))
    except LightspeedError as exc:
        row["yosys"] = {"error": str(exc).splitlines()[0]}
    return row


# ---------------------------------------------------------------------------
# da4ml side


def da4ml_verilog(prj: Path) -> str:
    """da4ml's design as one text: the top, its stages and the static modules they use.

    Unused static modules are left out (its ``lookup_table`` reads a placeholder .mem file).
    """
    src = prj / "src"
    files = sorted(p for p in src.glob("*.v") if not p.name.endswith("_wrapper.v"))
    text = "\n".join(p.read_text() for p in files)
    used = [p for p in sorted((src / "static").glob("*.v")) if f"{p.stem} " in text]
    return "\n".join([text, *(p.read_text() for p in used)])


def run_da4ml(
    w: np.ndarray, b: np.ndarray, in_t: str, accum: str, workdir: Path, x: np.ndarray,
    timeout: float,
) -> dict[str, Any]:  # fmt: skip
    from lightspeed.errors import LightspeedError
    from lightspeed.firmware.parts import get_part
    from lightspeed.firmware.synth import run_yosys

    workdir.mkdir(parents=True, exist_ok=True)
    case: dict[str, Any] = {
        "w": w, "b": b, "wf": WF, "in_kif": np.array(KIF[in_t]), "x": x,
        "latency_cutoff": LATENCY_CUTOFF,
    }  # fmt: skip
    if accum == "hls4ml":
        case["out_kif"] = np.array(KIF[HLS4ML_T])
        case["out_modes"] = "WRAP TRN"
    np.savez(workdir / "case.npz", **case)
    t0 = time.perf_counter()
    r = subprocess.run(
        [str(peer_python()), str(PEER), str(workdir / "case.npz"), str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0:
        return {"error": "da4ml failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]}
    res = json.loads((workdir / "result.json").read_text())
    row: dict[str, Any] = {
        "generate_seconds": round(time.perf_counter() - t0, 2),
        "solve_seconds": round(res["solve_seconds"], 2),
        "stages": res["stages"],
        # input register + one register after every stage
        "latency_cycles": res["stages"] + 1,
        "adder_depth": res["adder_depth"],
        "estimate_lut": res["cost_estimate_lut"],
        "y": np.array(res["y"], dtype=np.float64),
    }
    if timeout <= 0:
        return row
    try:
        rep = run_yosys(da4ml_verilog(workdir / "prj"), "da4ml_dense", get_part("xcvu9p"), timeout)
        row["yosys"] = yosys_row(rep)
    except LightspeedError as exc:
        row["yosys"] = {"error": str(exc).splitlines()[0]}
    return row


# ---------------------------------------------------------------------------
# the comparison


def compare_outputs(a: np.ndarray, b: np.ndarray, result_t) -> dict[str, Any]:
    """How far two output arrays are apart, in LSBs of ``result_t`` (modulo its wrap)."""
    d = np.abs(np.round((a - b) * 2.0**result_t.frac))
    if result_t.overflow == "WRAP":  # -2^(W-1) and 2^(W-1) - 1 are 1 LSB apart on a ring
        d = np.minimum(d % 2**result_t.width, 2**result_t.width - d % 2**result_t.width)
    return {
        "vectors": int(a.shape[0]),
        "identical": bool(np.array_equal(a, b)),
        "outputs_differing": int(np.count_nonzero(d)),
        "outputs": int(d.size),
        "max_diff_lsb": float(d.max()) if d.size else 0.0,
    }


def run(
    graph, workdir: Path, timeout: float, cases=CASES, layers: list[str] | None = None,
    n_vectors: int = 2000, save=None,
) -> dict[str, Any]:  # fmt: skip
    """All (case, layer) pairs; ``save(res)`` is called after each so a long run keeps its rows."""
    rows: list[dict[str, Any]] = []
    res: dict[str, Any] = {
        "benchmark": "firmware_da4ml",
        "da4ml_version": peer_version(),
        "part": "xcvu9p",
        "clock_ns": 5.0,
        "weights": f"shipped float tagger, input scaling unfolded, rounded to {WEIGHT_T} (RND, SAT)",
        "sparsity_pruned": SPARSITY,
        "da4ml_latency_cutoff": LATENCY_CUTOFF,
        "rows": rows,
    }
    for case in cases:
        if case in NETWORK_CASES:
            rows.append(run_network(graph, workdir, timeout, pruned="pruned" in case))
            if save:
                save(res)
            continue
        accum, pruned = case.split("-")[0], case.endswith("-pruned")
        for lay in tagger_layers(graph):
            if layers and lay["name"] not in layers:
                continue
            w = prune(lay["w"], lay["w_float"], SPARSITY) if pruned else lay["w"]
            x = test_inputs(lay["in_t"], n_vectors, w.shape[0])
            tag = f"{case}_{lay['name']}"
            print(f"== {tag}: {w.shape[0]}x{w.shape[1]}, {np.mean(w == 0):.0%} zeros", flush=True)
            q = lightspeed_layer(w, lay["b"], lay["in_t"], accum)
            ls = run_lightspeed(q, workdir / f"ls_{tag}", x, timeout)
            da = run_da4ml(w, lay["b"], lay["in_t"], accum, workdir / f"da_{tag}", x, timeout)
            row: dict[str, Any] = {
                "case": case, "layer": lay["name"], "shape": list(w.shape),
                "input_type": lay["in_t"], "accumulator": accum,
                "zeros": float(np.mean(w == 0)), "nonzero_weights": int(np.count_nonzero(w)),
            }  # fmt: skip
            if "y" in da:
                row["equivalence"] = compare_outputs(ls["y"], da["y"], q.precision["fc"]["result"])
            ls.pop("y", None)
            da.pop("y", None)
            row["lightspeed"], row["da4ml"] = ls, da
            lu, du = ls.get("yosys", {}).get("lut"), da.get("yosys", {}).get("lut")
            if lu and du:
                row["lut_ratio"] = lu / du
            print(json.dumps(row), flush=True)
            rows.append(row)
            if save:
                save(res)
    return res


# ---------------------------------------------------------------------------
# the whole network (exact accumulators; ReLU outputs cast to NET_ACT_T)

NET_ACT_T = "ap_ufixed<6,0,RND,SAT>"  # da4ml has no RND_CONV: round half up on both sides


def lightspeed_network(layers: list[dict[str, Any]], ws: list[np.ndarray]):
    import lightspeed
    from lightspeed.ir import Graph, Node, infer_shapes

    nodes, cfg, prev = [], {}, "x"
    for n, (lay, w) in enumerate(zip(layers, ws, strict=True)):
        p = {"weight": w * 2.0**-WF, "bias": lay["b"] * 2.0**-WF}
        nodes.append(Node(f"fc{n}", "dense", [prev], [f"h{n}"], {}, p))
        cfg[f"fc{n}"] = {"weight": WEIGHT_T, "bias": WEIGHT_T}
        prev = f"h{n}"
        if n < len(layers) - 1:
            nodes.append(Node(f"relu{n}", "relu", [prev], [f"a{n}"], {}))
            cfg[f"relu{n}"] = {"result": NET_ACT_T}
            prev = f"a{n}"
    g = infer_shapes(Graph("tagger", {"x": (ws[0].shape[0],)}, [prev], nodes))
    return lightspeed.quantize(g, "trained", config={"layers": cfg}, input_types={"x": FIRST_T})


def run_network(graph, workdir: Path, timeout: float, pruned: bool, n_vectors: int = 2000):
    from lightspeed.errors import LightspeedError
    from lightspeed.firmware.parts import get_part
    from lightspeed.firmware.synth import run_yosys

    layers = tagger_layers(graph)
    ws = [prune(la["w"], la["w_float"], SPARSITY) if pruned else la["w"] for la in layers]
    case = "exact-pruned-network" if pruned else "exact-network"
    print(f"== {case}", flush=True)
    x = test_inputs(FIRST_T, n_vectors, ws[0].shape[0])
    q = lightspeed_network(layers, ws)
    ls = run_lightspeed(q, workdir / f"ls_{case}", x, timeout)
    wd = workdir / f"da_{case}"
    wd.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "w": ws[0], "b": layers[0]["b"], "wf": WF, "in_kif": np.array(KIF[FIRST_T]), "x": x,
        "latency_cutoff": LATENCY_CUTOFF, "n_layers": len(ws), "act_kif": np.array((0, 0, 6)),
    }  # fmt: skip
    for n in range(1, len(ws)):
        arrays[f"w{n}"], arrays[f"b{n}"] = ws[n], layers[n]["b"]
    np.savez(wd / "case.npz", **arrays)
    r = subprocess.run(
        [str(peer_python()), str(PEER), str(wd / "case.npz"), str(wd)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    row: dict[str, Any] = {
        "case": case, "layer": "network", "shape": [16, 64, 32, 32, 5], "input_type": FIRST_T,
        "accumulator": "exact", "zeros": float(np.mean(np.concatenate([w.ravel() for w in ws]) == 0)),
        "nonzero_weights": int(sum(np.count_nonzero(w) for w in ws)),
    }  # fmt: skip
    if r.returncode != 0:
        da: dict[str, Any] = {"error": "da4ml failed: " + r.stderr.strip().splitlines()[-1]}
    else:
        res = json.loads((wd / "result.json").read_text())
        da = {
            "stages": res["stages"], "latency_cycles": res["stages"] + 1,
            "adder_depth": res["adder_depth"], "estimate_lut": res["cost_estimate_lut"],
            "solve_seconds": round(res["solve_seconds"], 2),
        }  # fmt: skip
        y = np.array(res["y"], dtype=np.float64)
        row["equivalence"] = compare_outputs(ls["y"], y, q.precision["fc3"]["result"])
        if timeout > 0:
            try:
                rep = run_yosys(
                    da4ml_verilog(wd / "prj"), "da4ml_dense", get_part("xcvu9p"), timeout
                )
                da["yosys"] = yosys_row(rep)
            except LightspeedError as exc:
                da["yosys"] = {"error": str(exc).splitlines()[0]}
    ls.pop("y", None)
    row["lightspeed"], row["da4ml"] = ls, da
    lu, du = ls.get("yosys", {}).get("lut"), da.get("yosys", {}).get("lut")
    if lu and du:
        row["lut_ratio"] = lu / du
    print(json.dumps(row), flush=True)
    return row


# ---------------------------------------------------------------------------
# report


def _y(side: dict[str, Any]) -> str:
    y = side.get("yosys", {})
    if "lut" not in y:
        return side.get("error") or y.get("error", "not run")
    return f"{y['lut']:,} / {y['ff']:,} / {y['carry']:,} / {y['dsp']}"


def table(res: dict[str, Any]) -> str:
    lines = [
        "| layer | accumulator | zeros | lightspeed LUT / FF / CARRY / DSP | cycles "
        "| da4ml LUT / FF / CARRY / DSP | cycles | LUT lightspeed / da4ml | same outputs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        ls, da = r["lightspeed"], r["da4ml"]
        eq = r.get("equivalence")
        if eq is None:
            eqt = "-"
        elif eq["identical"]:
            eqt = f"yes ({eq['vectors']:,} vectors)"
        else:
            eqt = (
                f"no: {eq['outputs_differing']:,} of {eq['outputs']:,} outputs, "
                f"max {eq['max_diff_lsb']:g} LSB"
            )
        ratio = f"{r['lut_ratio']:.2f}" if "lut_ratio" in r else "-"
        shape = ("->" if r["layer"] == "network" else "x").join(map(str, r["shape"]))
        lines.append(
            f"| {r['layer']} ({shape}, {r['input_type']}) | {r['accumulator']} | "
            f"{r['zeros']:.0%} | {_y(ls)} | {ls.get('latency_cycles', '-')} | {_y(da)} | "
            f"{da.get('latency_cycles', '-')} | {ratio} | {eqt} |"
        )
    return "\n".join(lines)


def totals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Per case, the sum of the layers' LUTs and cycles (a network is roughly its layers)."""
    out = []
    for case in CASES:
        rs = [r for r in res["rows"] if r["case"] == case]
        if not rs or not all("lut_ratio" in r for r in rs):
            continue
        out.append({
            "case": case, "layers": len(rs),
            "lightspeed_lut": sum(r["lightspeed"]["yosys"]["lut"] for r in rs),
            "da4ml_lut": sum(r["da4ml"]["yosys"]["lut"] for r in rs),
            "lightspeed_cycles": sum(r["lightspeed"]["latency_cycles"] for r in rs),
            "da4ml_cycles": sum(r["da4ml"]["latency_cycles"] for r in rs),
            "layers_lut_met": sum(r["lut_ratio"] <= 1.0 for r in rs),
            "layers_cycles_met": sum(
                r["lightspeed"]["latency_cycles"] <= r["da4ml"]["latency_cycles"] for r in rs
            ),
        })  # fmt: skip
    return out


def section(res: dict[str, Any]) -> str:
    tot = totals(res)
    tot_lines = "\n".join(
        f"* **{t['case']}** ({t['layers']} layers): lightspeed {t['lightspeed_lut']:,} LUT vs "
        f"da4ml {t['da4ml_lut']:,} ({t['lightspeed_lut'] / t['da4ml_lut']:.2f}x); "
        f"{t['lightspeed_cycles']} vs {t['da4ml_cycles']} cycles summed; LUT target "
        f"(lightspeed <= da4ml) met on {t['layers_lut_met']} of {t['layers']} layers, "
        f"cycles on {t['layers_cycles_met']} of {t['layers']}."
        for t in tot
    )
    return f"""## lightspeed vs da4ml 0.6

`python benchmarks/firmware.py --da4ml` -- each dense layer of the 16->64->32->32->5 jet tagger
as one design, the same integer weights in both tools, both through the same Yosys
`synth_xilinx -family xcup` (xcvu9p) run by `lightspeed.firmware.synth`. Weights: {res["weights"]};
pruned rows zero the {res["sparsity_pruned"]:.0%} smallest-magnitude weights of each layer.
Inputs: `{FIRST_T}` into the first layer, `{RELU_T}` (ReLU outputs) into the others.
lightspeed: defaults (shared products and adder graphs, `--multipliers auto`, 5 ns clock).
da4ml {res["da4ml_version"]}: `x @ W + b` traced with `FixedVariableArrayInput`, CMVM solver
defaults, `RTLModel(..., latency_cutoff={res["da4ml_latency_cutoff"]})` (adder levels per
pipeline stage; da4ml has no delay model in ns). LUT counts include SRLs.
Cycles: clock edges from input port to output port; da4ml registers its inputs (one of its
cycles), lightspeed expects registered inputs.

* **exact** accumulators: nothing is rounded, the output is the exact sum. Both tools compute
  the same function; "same outputs" compares lightspeed's emulator with da4ml's own
  interpreter on random inputs.
* **hls4ml** accumulators: `{HLS4ML_T}` accumulator and result (hls4ml's defaults).
  lightspeed keeps hls4ml's contract, which casts every product to the accumulator (products
  finer than 2^-10 are truncated one by one), so only shared products apply there, not
  shared adder graphs; da4ml has no such contract and casts the exact sum once. These are
  different functions (the "same outputs" column shows by how much).
* **network** rows: the whole tagger as one design, exact accumulators, each ReLU output
  cast to `{NET_ACT_T}` (da4ml has no RND_CONV, so round-half-up on both sides).

{table(res)}

Sums over the layers (a network is about the sum of its layers plus activations; the cycles
are summed per layer, each da4ml layer with its own input register):

{tot_lines}

{verdict(res)}
"""


def verdict(res: dict[str, Any]) -> str:
    nets = [r for r in res["rows"] if r["layer"] == "network"]
    rows = [r for r in res["rows"] if r["layer"] != "network"]
    ratios = [r["lut_ratio"] for r in rows if "lut_ratio" in r]
    if not ratios:
        return "No Yosys results in this run."
    secs = sum(
        r[side]["yosys"].get("seconds", 0) for r in res["rows"] for side in ("lightspeed", "da4ml")
        if "yosys" in r[side]
    )  # fmt: skip
    ffs = [
        r["da4ml"]["yosys"]["ff"] / r["lightspeed"]["yosys"]["ff"] for r in rows if "lut_ratio" in r
    ]
    met = sum(x <= 1.0 for x in ratios)
    lat = sum(r["lightspeed"]["latency_cycles"] <= r["da4ml"]["latency_cycles"] for r in rows)
    net = " ".join(
        f"Whole network ({r['case']}, {r['zeros']:.0%} zeros): lightspeed "
        f"{r['lightspeed']['yosys']['lut']:,} LUT / {r['lightspeed']['latency_cycles']} cycles vs "
        f"da4ml {r['da4ml']['yosys']['lut']:,} LUT / {r['da4ml']['latency_cycles']} cycles "
        f"({r['lut_ratio']:.2f}x), outputs "
        f"{'identical' if r['equivalence']['identical'] else 'DIFFERENT'} on "
        f"{r['equivalence']['vectors']:,} random inputs."
        for r in nets
        if "lut_ratio" in r
    )
    return (
        (f"**{net}**\n\n" if net else "")
        + f"**Target (issue 14: lightspeed's LUTs <= da4ml's and cycles <= da4ml's, per layer): "
        f"LUT met on {met} of {len(ratios)} layer designs (lightspeed needs "
        f"{min(ratios):.2f}-{max(ratios):.2f}x da4ml's LUTs), cycles met on {lat} of {len(rows)}.** "
        "Cycles come from each tool's own model (lightspeed: a delay model in ns for 5 ns; "
        f"da4ml: at most {res['da4ml_latency_cutoff']} adder levels per stage), not from timing "
        f"closure; lightspeed uses {min(ffs):.1f}-{max(ffs):.1f}x fewer flip-flops (no input "
        "register, fewer stages). Where the accumulation is exact "
        "both tools share subexpressions across the matrix and compute identical outputs; "
        "da4ml's solver (a column decomposition of the matrix, then bit-width-weighted "
        "common-subexpression elimination, per its documentation) finds more sharing than "
        "lightspeed's greedy pairwise search (likely the main cause; not yet measured adder by "
        "adder). Under hls4ml's accumulator contract lightspeed cannot share sums of truncated "
        "products and the gap widens, except on the pruned 16-bit-input layer, likely because "
        "there lightspeed adds products already truncated to 2^-10 while da4ml adds them at "
        f"full precision (2^-15) before its one cast. Total Yosys time {secs / 60:.0f} min on "
        f"{res.get('machine', {}).get('cpus', '?')} shared cores."
    )


def write_section(doc_path: Path, res: dict[str, Any]) -> None:
    """Replace (or append) the da4ml section of the firmware benchmark page."""
    text = doc_path.read_text() if doc_path.exists() else ""
    head = text.split("## lightspeed vs da4ml 0.6")[0].rstrip()
    doc_path.write_text((head + "\n\n" if head else "") + section(res))
