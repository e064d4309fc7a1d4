"""Benchmarks: MLPerf LoadGen scenarios, the SONIC capacity study, and the HTML report.

>>> from lightspeed.bench import run_loadgen, LoadgenConfig
>>> run_loadgen(LoadgenConfig(scenario="offline", target="inprocess:compiled_dir", outdir="lg"))
>>> from lightspeed.bench import run_sonic, SonicConfig
>>> run_sonic(SonicConfig(model="compiled_dir", clients=[1, 2, 4], outdir="sonic"))
>>> from lightspeed.bench import write_report, demo_report
>>> write_report("results_dir", "report.html")

Heavy dependencies (mlperf_loadgen, tritonclient, scipy, matplotlib) load only when used.
"""

from __future__ import annotations

__all__ = [
    "LoadgenConfig",
    "SonicConfig",
    "demo_report",
    "run_loadgen",
    "run_sonic",
    "write_report",
]

_WHERE = {
    "LoadgenConfig": "lightspeed.bench.loadgen",
    "run_loadgen": "lightspeed.bench.loadgen",
    "SonicConfig": "lightspeed.bench.sonic",
    "run_sonic": "lightspeed.bench.sonic",
    "write_report": "lightspeed.bench.report",
    "demo_report": "lightspeed.bench.demo_page",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
