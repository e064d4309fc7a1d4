"""Loading the optional numba kernel modules (one rule for every kernel family)."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from types import ModuleType


@functools.cache
def kernel_module(name: str) -> ModuleType | None:
    """The compiled kernel module ``name``, or None without numba or with
    ``LIGHTSPEED_NO_JIT=1`` (the NumPy reference paths then run, same bits)."""
    if os.environ.get("LIGHTSPEED_NO_JIT", "") not in ("", "0"):
        return None
    try:
        import numba  # noqa: F401
    except ImportError:
        return None
    return importlib.import_module(name)


def is_loaded(name: str) -> bool:
    """True once ``name`` was imported in this process (no start-up cost left)."""
    return name in sys.modules
