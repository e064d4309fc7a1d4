"""The emitter registry both firmware backends use (Verilog, HLS).

A backend keeps one :class:`EmitterRegistry`; its ``emit_<family>.py``
modules mirror ``ops/<family>.py`` and register a function per op with
``@registry.register("op")``. :meth:`EmitterRegistry.load` imports every
``emit_*`` module of the backend's package, so a new op family needs no
edit anywhere else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


class EmitterRegistry(dict[str, Callable[..., Any]]):
    """op name -> emitter, filled by the ``emit_*`` modules of one package."""

    def __init__(self, package: str, folder: Path) -> None:
        super().__init__()
        self.package, self.folder = package, folder

    def register(self, op: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``fn`` emits nodes of op ``op`` (the :class:`~lightspeed.ops.base.Op` name)."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self[op] = fn
            return fn

        return deco

    def load(self) -> None:
        """Import every ``emit_*`` module of the package (importing one registers its emitters)."""
        for mod in pkgutil.iter_modules([str(self.folder)]):
            if mod.name.startswith("emit_"):
                importlib.import_module(f"{self.package}.{mod.name}")
