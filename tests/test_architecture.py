"""The architecture is checked, not just documented (docs/architecture.md).

* the stage order is an import-linter contract in pyproject.toml;
* no import cycles, at module granularity;
* every list of supported ops is derived from the op registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    cli = pytest.importorskip("importlinter.cli")
    cwd = os.getcwd()
    os.chdir(ROOT)  # the contracts live in pyproject.toml
    try:
        assert cli.lint_imports() == 0, "lint-imports failed: run `lint-imports` for the report"
    finally:
        os.chdir(cwd)


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp")
    g = grimp.build_graph("lightspeed", exclude_type_checking_imports=True)
    cycles = []
    for m in sorted(g.modules):
        for t in g.find_modules_directly_imported_by(m):
            back = g.find_shortest_chain(importer=t, imported=m)
            if back:
                cycles.append(" -> ".join([m, *back]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_supported_lists_come_from_the_registry():
    from lightspeed.firmware.hls.registry import supported_ops
    from lightspeed.firmware.verilog import EMITTERS, load_emitters
    from lightspeed.ops import all_ops, onnx_handlers
    from lightspeed.ops.onnx_import import supported_onnx_types, unsupported

    ops = all_ops()
    assert set(onnx_handlers()) <= set(supported_onnx_types())
    # every ONNX type a module imports names an op that module defines
    for onnx_type, (op, handler) in onnx_handlers().items():
        assert op.onnx_import[onnx_type] is handler
    # a supported type in an unsupported form says so instead of listing alternatives
    msg = str(unsupported("Flatten", "f", "axis=0"))
    assert "supported, but not in this form" in msg and "axis=0" in msg
    # an unknown type lists the supported ones, derived
    assert "Gemm" in str(unsupported("NoSuchOp", "n"))
    load_emitters()
    public = {n for n, o in ops.items() if not o.internal}
    # the firmware backends cover every op but the tree ensemble in HLS
    assert public - set(EMITTERS) == set()
    assert public - supported_ops() <= {"tree_ensemble"}


def test_docs_ops_table_is_generated_from_the_registry():
    from lightspeed.ops.table import markdown

    assert (ROOT / "docs" / "ops.md").read_text() == markdown(), (
        "docs/ops.md is stale: python -m lightspeed.ops.table > docs/ops.md"
    )
