"""Shared helpers of the firmware checks in the op tests: skip without tools, and
"this quantized model's RTL / HLS C simulation equals the emulator"."""

from __future__ import annotations

import pytest

TOOLS = {
    "verilog": ("find_verilator", "find_make", "find_cxx"),
    "hls": ("find_ap_types", "find_cxx"),
}


def skip_without(*tools: str) -> None:
    """Skip the test, naming what to install, when a simulation tool is missing."""
    from lightspeed.errors import ToolMissingError
    from lightspeed.firmware import tools as t

    try:
        for name in tools:
            getattr(t, name)()
    except ToolMissingError as exc:
        pytest.skip(str(exc))


def assert_firmware_exact(q, tmp_path, target: str = "verilog", n: int = 2000, X=None) -> dict:
    """Generate ``target`` firmware for ``q``, simulate ``n`` vectors, assert every bit."""
    from lightspeed import firmware
    from tests.firmware.models import random_vectors

    skip_without(*TOOLS[target])
    fw = firmware.generate(q, tmp_path / f"fw_{target}", target=target)
    r = firmware.check(fw, random_vectors(q, n=n) if X is None else X, q=q)
    assert r["exact"], r["mismatches"]
    return r
