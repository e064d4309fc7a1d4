"""The HTML page ``lightspeed demo`` writes: one model's cost, accuracy and firmware.

Written to be pasted into a talk: a summary line of the numbers that matter, the
per-layer table the terminal shows (types, multiplications, bit operations,
float-vs-fixed error, LUT estimate), resources as utilisation bars of the target
part, latency and II, accuracy with an axis from 0, and under every section the
command that reproduces it. Everything comes from ``demo_results.json``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.bench.report import _CSS, _fmt, _img, _plt, _png, _table
from lightspeed.errors import InputError

_PAGE_CSS = """
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #ccd;border-radius:6px;padding:.6em 1em;min-width:10em;background:#fafbff}
.card b{display:block;font-size:1.5em;color:#123}.card span{color:#555;font-size:.85em}
.bar{background:#eee;width:22em;height:1em;border-radius:3px;display:inline-block;
vertical-align:middle}.bar i{display:block;height:100%;background:#4a7bd0;border-radius:3px}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:.85em}
td.types{text-align:left;font-family:monospace;font-size:.85em}
"""


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{value}</b><span>{html.escape(label)}</span></div>'


def _cmd(*lines: str) -> str:
    body = "\n".join(html.escape(c) for c in lines if c)
    return f'<p class="note">Reproduce:</p><pre>{body}</pre>' if body else ""


def _bar(fraction: float) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return f'<span class="bar"><i style="width:{max(pct, 0.3):.2f}%"></i></span>'


def plot_accuracy(acc_float: float, acc_fixed: float, agreement: float, n: int) -> str:
    """Bars from 0 to 1 (no truncated axis) with the values written on them."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 2.2))
    labels = ["float model", "fixed point (emulator = RTL)", "argmax agreement"]
    values = [acc_float, acc_fixed, agreement]
    colors = ["#8aa4d6", "#2f5fb3", "#6c9a5b"]
    y = np.arange(len(values))
    ax.barh(y, values, color=colors, height=0.6)
    for yi, v in zip(y, values, strict=True):
        ax.text(v - 0.01, yi, f"{v:.4f}", va="center", ha="right", color="white", fontsize=9)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"fraction of the {n:,} test jets")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)


def _types(types: dict[str, str]) -> str:
    return "<br>".join(f"{html.escape(r)} {html.escape(t)}" for r, t in types.items())


def _layer_table(rep: dict[str, Any], per_layer_lut: dict[str, dict[str, float]]) -> str:
    head = ["layer", "op", "output", "types", "mults", "BOPs", "max |float-fixed|", "LUT est."]
    left = {"layer", "op", "types"}
    cells = [
        "<tr>"
        + "".join(f'<th class="l">{h}</th>' if h in left else f"<th>{h}</th>" for h in head)
        + "</tr>"
    ]
    for name, inp in rep.get("inputs", {}).items():
        cells.append(
            f'<tr><td class="l">{html.escape(name)}</td><td class="l">input</td>'
            f'<td>{tuple(inp["shape"])}</td><td class="types">{html.escape(inp["type"])}</td>'
            "<td></td><td></td><td></td><td></td></tr>"
        )
    for lay in rep.get("layers", []):
        err = (lay.get("error") or {}).get("max_abs_error")
        lut = (per_layer_lut.get(lay["name"]) or {}).get("lut")
        types = _types(lay["types"]) or f"= {html.escape(lay['output_type'])}"
        cells.append(
            f'<tr><td class="l">{html.escape(lay["name"])}</td>'
            f'<td class="l">{html.escape(lay["op"])}</td>'
            f'<td>{tuple(lay["output_shape"])}</td><td class="types">{types}</td>'
            f"<td>{_fmt(lay['mults'])}</td><td>{_fmt(lay['bops'])}</td>"
            f"<td>{'' if err is None else f'{err:.3g}'}</td><td>{_fmt(lut)}</td></tr>"
        )
    t = rep.get("totals", {})
    total_lut = sum((v or {}).get("lut", 0) for v in per_layer_lut.values())
    cells.append(
        '<tr><th class="l">total</th><th></th><th></th>'
        f'<th class="l">{_fmt(t.get("params"))} parameters</th>'
        f"<th>{_fmt(t.get('mults'))}</th><th>{_fmt(t.get('bops'))}</th><th></th>"
        f"<th>{_fmt(total_lut) if per_layer_lut else ''}</th></tr>"
    )
    return "<table>" + "".join(cells) + "</table>"


def _summary(c: dict[str, Any], fw: dict[str, Any]) -> str:
    cards = []
    if "accuracy_fixed" in c:
        flt = c.get("accuracy_float")
        also = f" (float {flt:.4f})" if flt is not None else ""
        cards.append(_card(f"{c['accuracy_fixed']:.4f}", f"fixed-point accuracy{also}"))
    if "argmax_agreement" in c:
        cards.append(_card(f"{c['argmax_agreement']:.4f}", "argmax agreement float vs fixed"))
    if "latency_ns" in fw:
        mhz = 1000 / fw["clock_period_ns"]
        cards.append(
            _card(
                f"{fw['latency_ns']:g} ns",
                f"latency, {fw['latency_cycles']} cycles at {mhz:.0f} MHz",
            )
        )
    sim = fw.get("simulation") or {}
    if "exact" in sim:
        ok = "bit-exact" if sim["exact"] else f"{sim.get('mismatched_values')} mismatches"
        ii = f", II {sim['ii']:g}" if "ii" in sim else ""
        cards.append(_card(ok, f"RTL vs emulator, {sim.get('vectors', 0):,} vectors{ii}"))
    est, part = fw.get("estimate") or {}, fw.get("part") or {}
    if est.get("lut") is not None and part.get("lut"):
        share = f"{100 * est['lut'] / part['lut']:.2f}% of {part['name']}"
        cards.append(_card(f"{est['lut']:,} LUT", f"{share}, {est.get('dsp', 0)} DSP (estimate)"))
    if "emulation_rate_per_s" in c:
        rate = f"{c['emulation_rate_per_s']:,.0f}"
        cards.append(_card(rate, "jets/s through the emulator (NumPy)"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _resources(fw: dict[str, Any], commands: dict[str, str]) -> str:
    est, part = fw.get("estimate") or {}, fw.get("part") or {}
    if not est:
        return ""
    rows = []
    for key, label in (("lut", "LUT"), ("ff", "FF"), ("dsp", "DSP")):
        used = est.get(key)
        cap = part.get(key)
        if used is None:
            continue
        frac = used / cap if cap else 0.0
        rows.append([label, used, cap, f"{100 * frac:.2f}%", f"<span>{_bar(frac)}</span>"])
    sim = fw.get("simulation") or {}
    timing = []
    if "latency_ns" in fw:
        period = fw["clock_period_ns"]
        timing += [
            ["latency", f"{fw['latency_cycles']} cycles = {fw['latency_ns']:g} ns"],
            ["clock", f"{period:g} ns ({1000 / period:.0f} MHz)"],
        ]
    if "ii" in sim:
        timing.append(["initiation interval (measured in RTL simulation)", f"{sim['ii']:g}"])
    if "exact" in sim:
        timing.append(
            [
                "RTL simulation (Verilator)",
                f"{sim.get('vectors', 0):,} vectors ({sim.get('vectors_source', 'random')}): "
                + ("every output bit equals the emulator" if sim["exact"] else
                   f"{sim['mismatched_values']} values differ"),
            ]
        )  # fmt: skip
    elif "skipped" in sim:
        timing.append(["RTL simulation", f"skipped: {sim['skipped']}"])
    title = f"{part.get('name', '')} — {part.get('description', '')}"
    return (
        "<h2>Firmware: resources, latency, initiation interval</h2>"
        f"<p>Fully parallel Verilog (II = 1 by design), target part <b>{html.escape(title)}</b>. "
        "LUT/FF/DSP are lightspeed's analytic estimate, calibrated against Yosys "
        "<code>synth_xilinx</code> (not Vivado); <code>lightspeed synth</code> runs Yosys.</p>"
        + _table(["resource", "used (estimate)", "available", "utilisation", ""], rows)
        + _table(["property", "value"], timing)
        + _cmd(
            commands.get("firmware", ""),
            commands.get("sim", ""),
            commands.get("estimate", ""),
            commands.get("synth", ""),
        )
    )


def _trigger(t: dict[str, Any], commands: dict[str, str]) -> str:
    """The 6-bit QAT, pruned tagger next to the published hls4ml reference."""
    if not t:
        return ""
    ref = t.get("reference") or {}
    est = t.get("estimate") or {}
    sparsity = t.get("weight_sparsity") or []
    rows = [
        ["accuracy (fixed point)", f"{t['accuracy_fixed']:.4f} on {t['test_jets']:,} test jets", "-"],
        [
            "latency",
            f"{t['latency_cycles']} cycles = {t['latency_ns']:g} ns" if "latency_ns" in t else "-",
            f"{ref.get('latency_ns', '-')} ns",
        ],
        ["LUT", f"{est.get('lut', 0):,} (lightspeed estimate)" if est else "-",
         f"~{ref.get('lut', 0):,} (about 1% of a VU9P)"],
        ["DSP", f"{est.get('dsp', 0):,}" if est else "-", f"{ref.get('dsp', '-')}"],
        ["FF", f"{est.get('ff', 0):,}" if est else "-", "-"],
    ]  # fmt: skip
    types = t.get("types") or {}
    return (
        "<h2>The trigger-ready tagger: 6-bit QAT, 70% pruned</h2>"
        "<p>The zoo's <code>jet_tagger_q6</code>: the same architecture trained with "
        f"lightspeed's QAT layers (weights {html.escape(types.get('weights', ''))}, ReLU outputs "
        f"{html.escape(types.get('relu', ''))}) and magnitude pruning "
        f"({', '.join(f'{100 * z:.0f}%' for z in sparsity)} zero weights per layer), compiled "
        "at its trained types (no calibration; bit-exact with the QAT model).</p>"
        + _table(
            ["", "lightspeed (Yosys-calibrated estimate)", html.escape(ref.get("source", ""))], rows
        )
        + '<p class="note">The reference is the published Vivado result for a 6-bit QKeras '
        "tagger of this architecture (different training and types, not re-measured here); "
        "lightspeed's numbers are its analytic estimate, calibrated against Yosys, not Vivado. "
        "docs/benchmarks/firmware.md has the Yosys runs.</p>" + _cmd(commands.get("trigger", ""))
    )


def render_demo(results: dict[str, Any], source: str = "") -> str:
    """The demo report page from ``demo_results.json``'s contents."""
    c = results.get("compile") or {}
    fw = dict(results.get("firmware") or {})
    if "latency_cycles" in fw and "clock_period_ns" in fw:
        fw.setdefault("latency_ns", fw["latency_cycles"] * fw["clock_period_ns"])
    commands = results.get("commands") or {}
    rep = c.get("report") or {}
    data = c.get("data") or {}
    model = c.get("model", "model")
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = c.get("test_jets", 0)
    parts = [
        f"<h1>lightspeed demo: {html.escape(model)}</h1>",
        f'<p class="note">Generated {stamp} by <code>lightspeed demo</code>'
        f"{' in <code>' + html.escape(source) + '</code>' if source else ''}. "
        f"Data: {_fmt(data.get('jets'))} {html.escape(data.get('source', ''))}; "
        f"{data.get('features', '?')} features, classes "
        f"{html.escape(', '.join(data.get('classes', [])))}; {html.escape(data.get('split', ''))}. "
        f"Precision: {html.escape(str(rep.get('precision', 'auto')))} (types sized from "
        f"{_fmt(data.get('calibration_jets'))} calibration jets, exact accumulators). "
        f"Everything on this page: <code>lightspeed demo"
        f"{' --workdir ' + html.escape(source) if source else ''}</code>.</p>",
        _summary(c, fw),
    ]
    if {"accuracy_float", "accuracy_fixed", "argmax_agreement", "max_abs_error"} <= set(c):
        parts += [
            f"<h2>Accuracy on {n:,} test jets</h2>",
            _img(
                plot_accuracy(c["accuracy_float"], c["accuracy_fixed"], c["argmax_agreement"], n),
                "accuracy float vs fixed",
            ),
            f'<p class="note">Largest |float - fixed| over all outputs of the {n:,} test jets: '
            f"{c['max_abs_error']:.3g}. The fixed-point numbers are the emulator's, which the RTL "
            "matches bit for bit.</p>",
            _cmd(commands.get("compile", ""), commands.get("predict", "")),
        ]
    if rep:
        cal = (rep.get("calibration") or {}).get("samples")
        parts += [
            "<h2>Per layer: types, cost, error</h2>",
            '<p class="note">Types are <code>ap_fixed&lt;W,I&gt;</code> (W bits, I integer bits, '
            "signed) or <code>ap_ufixed</code>; BOPs are bit operations (multiplier width product "
            f"summed); the error column is on the {_fmt(cal)} calibration jets; the LUT column "
            "is the firmware estimate charged to each layer.</p>",
            _layer_table(rep, fw.get("estimate_per_layer") or {}),
            "".join(
                f'<p class="bad">overflow: {html.escape(w)}</p>'
                for w in rep.get("overflow_warnings", [])
            )
            or '<p class="note">No overflow on the calibration data.</p>',
            _cmd(commands.get("report", "")),
        ]
    if fw:
        parts.append(_resources(fw, commands))
    parts.append(_trigger(results.get("trigger") or {}, commands))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>lightspeed demo: {html.escape(model)}</title>"
        f"<style>{_CSS}{_PAGE_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def demo_report(workdir: str | Path) -> Path:
    """The page for a ``lightspeed demo`` run: ``workdir/report.html`` from its results."""
    workdir = Path(workdir)
    path = workdir / "demo_results.json"
    if not path.exists():
        raise InputError(f"'{workdir}' holds no demo_results.json; run `lightspeed demo` first")
    out = workdir / "report.html"
    out.write_text(render_demo(json.loads(path.read_text()), str(workdir)), encoding="utf-8")
    return out
