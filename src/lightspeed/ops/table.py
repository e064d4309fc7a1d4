"""The supported-ops table of docs/ops.md, generated from the registry (never kept by hand).

``python -m lightspeed.ops.table > docs/ops.md`` rewrites it; a test checks the file is current.
"""

from __future__ import annotations

from lightspeed.ops.registry import all_ops


def _trained(op) -> str:
    if op.trained_precision is None:
        return "refused"
    return "default" if op.trained_default else "exact"


def markdown() -> str:
    rows = [
        "# Supported operators",
        "",
        "Generated from the op registry by `python -m lightspeed.ops.table > docs/ops.md`;",
        "a test fails when this file and the registry disagree. Each op is one module of",
        "`src/lightspeed/ops/`; see docs/architecture.md for how to add one.",
        "",
        'Trained typing (`precision="trained"`): *exact* completes the types from the input',
        "types without rounding; *default* gives the documented default types of",
        "docs/quantization.md (lookup tables, a held 1/K, a quantized slope); *refused* needs",
        "calibration or config types.",
        "",
        "| op | roles | ONNX import | QONNX export | trained typing | firmware stage | what it computes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, op in sorted(all_ops().items()):
        if op.internal:
            continue
        stage = "wiring" if op.wiring else "fused into the layer before" if op.fusable else "own"
        rows.append(
            f"| `{name}` | {', '.join(op.roles) or '-'} | {', '.join(sorted(op.onnx_import)) or '-'} "
            f"| {'yes' if op.onnx_export else 'no'} | {_trained(op)} "
            f"| {stage} | {op.doc} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
