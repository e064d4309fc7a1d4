"""The op registry: every public :class:`~lightspeed.ops.base.Op` record of every op module.

Op modules are discovered, not listed: each module of this package (other
than the infrastructure below) is imported once and the ``Op`` values it
defines at module level are registered under ``Op.name``. Adding an op means
writing its module; lists of supported ops (ONNX types, QONNX export, docs
tables, error hints) are derived from here, never kept by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import Any

from lightspeed.errors import UnsupportedOpError
from lightspeed.ops.base import Op

# modules of lightspeed.ops that hold infrastructure, not ops
_INFRA = {"base", "registry", "onnx_import", "onnx_export", "mac", "table"}


@cache
def _registry() -> dict[str, Op]:
    ops: dict[str, Op] = {}
    here = [str(Path(__file__).parent)]
    for info in sorted(pkgutil.iter_modules(here), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _INFRA:
            continue
        module = importlib.import_module(f"lightspeed.ops.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Op):
                if value.name in ops and ops[value.name] is not value:
                    raise RuntimeError(f"op {value.name!r} is defined twice ({info.name})")
                ops[value.name] = value
    return ops


def all_ops() -> dict[str, Op]:
    """Every registered op by IR name."""
    return dict(_registry())


def get_op(name: str) -> Op:
    try:
        return _registry()[name]
    except KeyError:
        public = sorted(k for k, v in _registry().items() if not v.internal)
        raise UnsupportedOpError(
            f"no lightspeed op {name!r}; supported ops: {', '.join(public)}"
        ) from None


@cache
def onnx_handlers() -> dict[str, tuple[Op, Any]]:
    """ONNX op type -> (the op whose module imports it, its handler)."""
    out: dict[str, tuple[Op, Any]] = {}
    for op in _registry().values():
        for onnx_type, handler in op.onnx_import.items():
            if onnx_type in out and out[onnx_type][1] is not handler:
                raise RuntimeError(
                    f"ONNX op {onnx_type} is imported by both {out[onnx_type][0].name} and {op.name}"
                )
            out[onnx_type] = (op, handler)
    return out


def onnx_rewrites() -> list[Any]:
    """Every op's ONNX graph rewrite (run before import, in op-name order)."""
    return [op.onnx_rewrite for _, op in sorted(_registry().items()) if op.onnx_rewrite]
