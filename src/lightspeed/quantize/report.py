"""The per-layer report: types, cost, float-vs-fixed error, overflow warnings."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightspeed.quantize.model import QuantizedModel


def build_report(q: QuantizedModel) -> dict[str, Any]:
    costs = q.costs()
    layer_stats = q.stats.get("layers", {})
    layers = []
    totals = {"params": 0, "mults": 0, "adds": 0, "bops": 0, "table_bits": 0}
    for node in q.graph.nodes:
        c = asdict(costs[node.name])
        for k in totals:
            totals[k] += c[k]
        w = q.qparams.get(node.name, {}).get("weight")
        zeros = {} if w is None else {"sparsity": float((w == 0).mean()) if w.size else 0.0}
        layers.append(
            {
                "name": node.name,
                "op": node.op,
                "inputs": node.inputs,
                "output_shape": list(q.graph.shapes[node.outputs[0]]),
                "types": {r: str(t) for r, t in q.precision[node.name].items()},
                "output_type": str(q.tensor_types[node.outputs[0]]),
                **c,
                **zeros,
                **({"error": layer_stats[node.name]} if node.name in layer_stats else {}),
            }
        )
    return {
        "model": q.graph.name,
        "precision": q.default or "auto",
        "inputs": {
            n: {"shape": list(q.graph.inputs[n]), "type": str(t)} for n, t in q.input_types.items()
        },
        "outputs": {
            n: {"shape": list(q.graph.shapes[n]), "type": str(q.tensor_types[n])}
            for n in q.graph.outputs
        },
        "layers": layers,
        "totals": totals,
        "calibration": {k: v for k, v in q.stats.items() if k != "layers"},
        "overflow_warnings": q.overflow_warnings(),
    }


def render_report(rep: dict[str, Any], console=None) -> None:
    """Print the report as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{rep['model']} — precision {rep['precision']}", show_lines=False)
    cols = ["layer", "op", "output", "types", "mults", "BOPs", "zero weights", "max |float-fixed|"]
    for col in cols:
        table.add_column(col, overflow="fold")
    for name, inp in rep["inputs"].items():
        table.add_row(name, "input", str(tuple(inp["shape"])), inp["type"], "", "", "", "")
    for lay in rep["layers"]:
        types = ", ".join(f"{r}={t}" for r, t in lay["types"].items()) or f"= {lay['output_type']}"
        err = lay.get("error", {}).get("max_abs_error")
        zeros = f"{100 * lay['sparsity']:.0f}%" if "sparsity" in lay else ""
        table.add_row(
            lay["name"], lay["op"], str(tuple(lay["output_shape"])), types,
            f"{lay['mults']:,}", f"{lay['bops']:,}", zeros, "" if err is None else f"{err:.3g}",
        )  # fmt: skip
    console.print(table)
    t = rep["totals"]
    console.print(
        f"totals: {t['params']:,} parameters, {t['mults']:,} multiplications, "
        f"{t['bops']:,} bit operations, {t['table_bits']:,} table bits"
    )
    cal = rep.get("calibration") or {}
    for name, o in (cal.get("outputs") or {}).items():
        extra = f", argmax agreement {o['argmax_agreement']:.4f}" if "argmax_agreement" in o else ""
        console.print(
            f"output {name}: max |float - fixed| = {o['max_abs_error']:.4g} on "
            f"{cal.get('samples', 0):,} calibration samples{extra}"
        )
    if rep["overflow_warnings"]:
        console.print("[yellow]overflow warnings:[/yellow]")
        for w in rep["overflow_warnings"]:
            console.print(f"  [yellow]![/yellow] {w}")
    else:
        console.print("no overflow on the calibration data")
