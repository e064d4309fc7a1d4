"""``lightspeed bench report``: one self-contained HTML page from a results directory.

Everything found under the directory goes in: LoadGen ``summary.json`` files
(``"kind": "loadgen"``), capacity studies (``sonic.json``), a demo run's
``demo_results.json`` (accuracy float vs fixed, firmware resources) and serving
benchmark JSON (``"benchmark": "serving"``). Plots are PNGs embedded as base64,
styles are inline: the page opens from disk, offline, in any browser.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import InputError


@dataclass
class Results:
    """What a results directory holds, by kind (each entry keeps its source path)."""

    loadgen: list[dict[str, Any]] = field(default_factory=list)
    sonic: list[dict[str, Any]] = field(default_factory=list)
    demo: list[dict[str, Any]] = field(default_factory=list)
    serving: list[dict[str, Any]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.loadgen or self.sonic or self.demo or self.serving)


def collect(results_dir: str | Path) -> Results:
    """Find and classify every JSON result below ``results_dir``."""
    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(f"results directory '{root}' does not exist")
    found = Results()
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith("mlperf_log") or path.stat().st_size > 50_000_000:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        data = {**data, "_source": str(path.relative_to(root))}
        if data.get("kind") == "loadgen":
            found.loadgen.append(data)
        elif data.get("kind") == "sonic":
            found.sonic.append(data)
        elif path.name == "demo_results.json" or (
            "compile" in data and "accuracy_fixed" in str(data.get("compile"))
        ):
            found.demo.append(data)
        elif data.get("benchmark") == "serving" and isinstance(data.get("rows"), list):
            found.serving.append(data)
    return found


# ----------------------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _run_label(s: dict[str, Any]) -> str:
    """'server / grpc jet_tagger' or 'offline / inprocess jt': scenario, where, which model."""
    target = str(s.get("target", ""))
    model = target.rstrip("/").rsplit("/", 1)[-1] if target else ""
    return f"{s['scenario']} / {s['target_kind']} {model}".strip()


def plot_latency_cdfs(loadgen: list[dict[str, Any]]) -> str | None:
    curves = [
        (_run_label(s), s["performance"]["latency_quantiles_ms"])
        for s in loadgen
        if s.get("performance", {}).get("latency_quantiles_ms")
    ]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    frac = np.linspace(0, 1, 101)
    for label, q in curves:
        ax.plot(np.maximum(q, 1e-3), frac[: len(q)], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency per query (ms, SUT-side)")
    ax.set_ylabel("fraction of queries")
    ax.set_title("LoadGen latency CDFs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_serving(serving: list[dict[str, Any]]) -> str | None:
    """Requests/s vs in-flight requests from serving benchmark JSON (one line per setup)."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for b in serving:
        for r in b["rows"]:
            if "concurrency" not in r or "throughput_rps" not in r:
                continue
            key = (
                f"{r.get('server', '?')}: {r.get('workload', '')}, batching {r.get('batching', '')}"
            )
            groups.setdefault(key, []).append((r["concurrency"], r["throughput_rps"]))
    if not groups:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for key, pts in groups.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=4, label=key)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("requests / s")
    ax.set_title("Serving throughput vs concurrency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _png(fig)


def plot_capacity(s: dict[str, Any]) -> str:
    from lightspeed.bench.sonic import sonic_time

    fit = s["fit"]
    n = np.array([r["clients"] for r in s["remote"]], dtype=float)
    grid = np.geomspace(1, max(n.max(), fit["n_saturation"] * 1.3, 2), 200)
    t = sonic_time(grid, fit["t_cpu_s"], fit["p"], fit["t_gpu_s"], fit["t_latency_s"], fit["n_gpu"])
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(n, [r["throughput_events_per_s"] for r in s["remote"]], "o", label="measured")
    a1.plot(grid, grid / t, "-", color="gray", label="SONIC model")
    if s.get("local"):
        a1.plot(
            [r["clients"] for r in s["local"]],
            [r["throughput_events_per_s"] for r in s["local"]],
            "s--",
            label="all-local",
        )
    a1.axvline(fit["n_saturation"], color="red", ls=":", label=f"N_sat = {fit['n_saturation']:.1f}")
    a1.set_xscale("log", base=2)
    a1.set_xlabel("client processes N")
    a1.set_ylabel("events / s")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a2.plot(n, [r["event_time_mean_s"] * 1e3 for r in s["remote"]], "o", label="measured mean")
    a2.plot(grid, t * 1e3, "-", color="gray", label="SONIC model")
    a2.axvline(fit["n_saturation"], color="red", ls=":")
    a2.set_xscale("log", base=2)
    a2.set_yscale("log")
    a2.set_xlabel("client processes N")
    a2.set_ylabel("time per event (ms)")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    fig.suptitle("Capacity curve (one server)")
    fig.tight_layout()
    return _png(fig)


def _accuracy_rows(res: Results) -> list[tuple[str, float, float]]:
    rows = []
    for d in res.demo:
        c = d.get("compile") or {}
        if "accuracy_float" in c and "accuracy_fixed" in c:
            rows.append(
                (f"demo: {c.get('model', 'model')}", c["accuracy_float"], c["accuracy_fixed"])
            )
    for s in res.loadgen:
        a = s.get("accuracy")
        if a:
            rows.append((f"LoadGen {_run_label(s)}", a["accuracy_float"], a["accuracy_fixed"]))
    return rows


def plot_accuracy(rows: list[tuple[str, float, float]]) -> str | None:
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.45 * len(rows)))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r[1] for r in rows], 0.4, label="float reference")
    ax.barh(y + 0.2, [r[2] for r in rows], 0.4, label="fixed point / target")
    lo = min(min(r[1], r[2]) for r in rows)
    ax.set_xlim(max(0.0, lo - 0.05), min(1.0, max(max(r[1], r[2]) for r in rows) + 0.02))
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("top-1 accuracy")
    ax.set_title("Accuracy: float vs fixed point")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------------------------------ html


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:1.6em;color:#234}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}th{background:#eef}
td.l,th.l{text-align:left}.ok{color:#070;font-weight:bold}.bad{color:#b00;font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}.note{color:#555;font-size:.9em}
code{background:#f4f4f4;padding:0 .2em}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) < 1e-9:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(
        f'<th class="l">{html.escape(h)}</th>' if i < left else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = ' class="l"' if i < left else ""
            if isinstance(v, str) and v.startswith("<span"):
                cells.append(f"<td{cls}>{v}</td>")
            else:
                cells.append(f"<td{cls}>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(b64: str | None, alt: str) -> str:
    if not b64:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _verdict(ok: bool, yes: str = "VALID", no: str = "INVALID") -> str:
    return f'<span class="ok">{yes}</span>' if ok else f'<span class="bad">{no}</span>'


def _loadgen_section(loadgen: list[dict[str, Any]]) -> str:
    if not loadgen:
        return ""
    rows = []
    for s in sorted(loadgen, key=lambda s: (s["target_kind"], s["scenario"])):
        perf = s.get("performance", {})
        lat = perf.get("latency_ms", {})
        acc = s.get("accuracy", {})
        rows.append(
            [
                s["scenario"],
                s["target"],
                perf.get("samples_per_second"),
                lat.get("p50.00"),
                lat.get("p90.00"),
                lat.get("p99.00"),
                _verdict(perf.get("validity") == "VALID") if perf else "-",
                perf.get("invalid_reason") or perf.get("retried") or "",
                acc.get("accuracy_fixed"),
                acc.get("accuracy_float"),
                _verdict(bool(acc.get("passed")), "pass", "FAIL") if acc else "-",
            ]
        )
    table = _table(
        [
            "scenario",
            "target",
            "samples/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "LoadGen",
            "reason / note",
            "acc target",
            "acc float",
            "99% of FP32",
        ],
        rows,
        left=2,
    )
    note = (
        '<p class="note">Measured by MLCommons LoadGen with shortened minimum durations '
        "(see each run's settings); MLPerf submissions need 600 s runs. "
        "99% of FP32: top-1 accuracy of the target &ge; 0.99 &times; the float reference's, "
        "on the same accuracy-mode samples.</p>"
    )
    return (
        "<h2>MLPerf LoadGen scenarios</h2>"
        + table
        + note
        + _img(plot_latency_cdfs(loadgen), "latency CDFs")
    )


def _sonic_section(sonic: list[dict[str, Any]]) -> str:
    parts = []
    for s in sonic:
        f = s["fit"]
        cfg = s["config"]
        local = {r["clients"]: r for r in s.get("local", [])}
        rows = []
        for r in s["remote"]:
            lr = local.get(r["clients"])
            rows.append(
                [
                    r["clients"],
                    r["throughput_events_per_s"],
                    r["event_time_mean_s"] * 1e3,
                    r["event_time_p99_s"] * 1e3,
                    r["infer_time_mean_s"] * 1e3,
                    lr["throughput_events_per_s"] if lr else None,
                    s["speedup_vs_local"].get(str(r["clients"])),
                ]
            )
        table = _table(
            [
                "N clients",
                "events/s (service)",
                "ms/event",
                "p99 ms/event",
                "inference ms",
                "events/s (all-local)",
                "speed-up",
            ],
            rows,
        )
        fit_rows = [
            ["t_CPU (all-local time per event)", f["t_cpu_s"] * 1e3, "ms, measured"],
            ["p (inference fraction of t_CPU)", f["p"], "measured"],
            [
                "t_GPU (server time per request)",
                f["t_gpu_s"] * 1e3,
                f"ms ± {f['t_gpu_err_s'] * 1e3:.3g}",
            ],
            ["t_latency", f["t_latency_s"] * 1e3, f"ms ± {f['t_latency_err_s'] * 1e3:.3g}"],
            ["t_ideal = (1-p) t_CPU + t_GPU + t_latency", f["t_ideal_s"] * 1e3, "ms"],
            ["saturation N_sat = N_GPU t_ideal / t_GPU", f["n_saturation"], "clients"],
            ["server capacity N_GPU / t_GPU", f["server_capacity_per_s"], "requests/s"],
        ]
        parts.append(
            f"<h3>{html.escape(s['_source'])}: {cfg['cpu_ms']:g} ms {cfg['work']} work per event, "
            f"{cfg['mode']} requests, batch {cfg['batch']}</h3>"
            + table
            + _table(["SONIC model parameter", "value", "unit"], fit_rows, left=1)
            + f"<p>One server sustains about <b>{s['sustains_clients']}</b> clients of this kind; "
            f"best throughput {s['max_throughput']['events_per_s']:,.0f} events/s at "
            f"N = {s['max_throughput']['clients']}.</p>" + _img(plot_capacity(s), "capacity curve")
        )
    if not parts:
        return ""
    return (
        "<h2>SONIC capacity study</h2>"
        '<p class="note">t = (1-p)·t_CPU + t_GPU·[1 + max(0, N/N_GPU &minus; t_ideal/t_GPU)] + '
        "t_latency, fitted to the measured time per event (t_GPU, t_latency free; t_CPU, p "
        "from the all-local run).</p>" + "".join(parts)
    )


_DEMO_LABELS = (
    ("model", "model"),
    ("test_jets", "test jets"),
    ("accuracy_float", "accuracy, float model"),
    ("accuracy_fixed", "accuracy, fixed point"),
    ("argmax_agreement", "argmax agreement float vs fixed"),
    ("max_abs_error", "largest |float - fixed| on the test jets"),
    ("emulation_rate_per_s", "emulator throughput (jets/s)"),
    ("compile_seconds", "compile time (s)"),
)


def _demo_section(demo: list[dict[str, Any]]) -> str:
    """A demo run's headline numbers (``lightspeed demo`` writes the full page itself)."""
    parts = []
    for d in demo:
        c = d.get("compile") or {}
        rows = [[label, c[key]] for key, label in _DEMO_LABELS if key in c]
        fw = d.get("firmware") or {}
        est = fw.get("estimate") or {}
        sim = fw.get("simulation") or {}
        if "latency_ns" in fw:
            rows.append(["latency", f"{fw['latency_cycles']} cycles = {fw['latency_ns']:g} ns"])
        rows += [[f"{k.upper()} (estimate)", v] for k, v in est.items() if v is not None]
        if "exact" in sim:
            rows.append(["RTL simulation vs emulator", "bit-exact" if sim["exact"] else "differs"])
        if rows:
            parts.append(
                f"<h3>Demo run ({html.escape(d['_source'])})</h3>"
                + _table(["quantity", "value"], rows)
            )
    return "<h2>Demo run</h2>" + "".join(parts) if parts else ""


def _serving_section(serving: list[dict[str, Any]]) -> str:
    parts = []
    for b in serving:
        rows = [
            [
                r.get("server"),
                r.get("workload"),
                r.get("batching"),
                r.get("concurrency"),
                r.get("throughput_rps"),
                r.get("p50_ms"),
                r.get("p99_ms"),
                r.get("avg_batch"),
            ]
            for r in b["rows"]
        ]
        parts.append(
            f"<h3>{html.escape(b['_source'])}</h3>"
            + _table(
                [
                    "server",
                    "workload",
                    "batching",
                    "concurrency",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "avg batch",
                ],
                rows,
                left=3,
            )
        )
    return "<h2>Serving benchmark</h2>" + "".join(parts) if parts else ""


def render_html(res: Results, title: str = "lightspeed benchmark report", source: str = "") -> str:
    acc_rows = _accuracy_rows(res)
    acc = ""
    if acc_rows:
        acc = (
            "<h2>Accuracy: float vs fixed point</h2>"
            + _table(
                ["source", "float", "fixed / target", "ratio"],
                [[r[0], r[1], r[2], r[2] / r[1] if r[1] else None] for r in acc_rows],
            )
            + _img(plot_accuracy(acc_rows), "accuracy float vs fixed")
        )
    throughput = plot_serving(res.serving)
    thr = (
        "<h2>Throughput vs concurrency</h2>"
        '<p class="note">Serving benchmark: requests per second against requests in flight; '
        "the capacity study below shows events per second against client processes.</p>"
        + _img(throughput, "throughput vs concurrency")
        if throughput
        else ""
    )
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        _demo_section(res.demo)
        + acc
        + _loadgen_section(res.loadgen)
        + thr
        + _serving_section(res.serving)
        + _sonic_section(res.sonic)
    )
    if not body:
        body = "<p>No results found.</p>"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="note">Generated {stamp} by <code>lightspeed bench report</code>'
        f"{' from <code>' + html.escape(source) + '</code>' if source else ''}.</p>"
        f"{body}</body></html>"
    )


def write_report(
    results_dir: str | Path, out_html: str | Path, title: str = "lightspeed benchmark report"
) -> Path:
    """Collect results under ``results_dir`` and write one self-contained HTML page."""
    res = collect(results_dir)
    if res.empty():
        raise InputError(
            f"no results under '{results_dir}': expected LoadGen summary.json, sonic.json, "
            "demo_results.json or serving benchmark JSON (run `lightspeed bench loadgen` first)"
        )
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(res, title, str(results_dir)), encoding="utf-8")
    return out
