"""The supported-ops table of docs/ops.md, generated from the registry (never kept by hand).

``python -m lightspeed.ops.table > docs/ops.md`` rewrites it; a test checks the file is current.
"""

from __future__ import annotations

from lightspeed.ops.registry import all_ops


def markdown() -> str:
    rows = [
        "# Supported operators",
        "",
        "Generated from the op registry by `python -m lightspeed.ops.table > docs/ops.md`;",
        "a test fails when this file and the registry disagree. Each op is one module of",
        "`src/lightspeed/ops/`; see docs/architecture.md for how to add one.",
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
            f"| {'yes' if op.onnx_export else 'no'} | {'exact' if op.trained_precision else 'refused'} "
            f"| {stage} | {op.doc} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
