"""Import layering of the serving/tooling side: no facade imports, no cycles, no back-edges.

The stage order (top imports bottom only): cli > commands, demo > bench, dask,
deploy > zoo > serve, client, firmware > artifact > ... > errors; ``lightspeed.files``
and ``lightspeed.__about__`` sit at the bottom with ``errors``.
"""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")

# the modules whose layering this test guards (others are being restructured separately)
OWNED = ("serve", "client", "bench", "data", "zoo", "demo", "dask", "deploy", "commands", "cli")
FIRMWARE_OWNED = ("commands", "tools", "project", "sim", "synth", "estimate", "config", "parts")
STAGES = [
    ("cli",),
    ("commands", "demo"),
    ("bench", "dask", "deploy"),
    ("zoo",),
    ("serve", "client", "firmware"),
]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("lightspeed")


def _owned(module: str) -> bool:
    parts = module.split(".")
    if len(parts) < 2:
        return False
    if parts[1] == "firmware":
        return len(parts) == 2 or parts[2] in FIRMWARE_OWNED
    return parts[1] in OWNED or parts[1] in ("files", "__about__")


def test_no_module_imports_the_facade(graph):
    importers = {m for m in graph.find_modules_that_directly_import("lightspeed") if _owned(m)}
    assert not importers, f"import the specific module, not the lightspeed facade: {importers}"


def test_low_level_helpers_import_only_errors(graph):
    for mod in ("lightspeed.files", "lightspeed.__about__"):
        assert graph.find_modules_directly_imported_by(mod) <= {"lightspeed.errors"}


def test_no_cycles_through_owned_modules(graph):
    for m in sorted(filter(_owned, graph.modules)):
        for t in graph.find_modules_directly_imported_by(m):
            back = graph.find_shortest_chain(importer=t, imported=m)
            assert back is None, f"cycle: {m} -> {' -> '.join(back)}"


def test_stage_order(graph):
    rank = {name: i for i, names in enumerate(STAGES) for name in names}
    for m in sorted(filter(_owned, graph.modules)):
        a = m.split(".")[1]
        for t in graph.find_modules_directly_imported_by(m):
            b = t.split(".")[1] if "." in t else None
            if a == b or a not in rank or b not in rank:
                continue
            assert rank[b] >= rank[a], f"back-edge {m} -> {t}"
