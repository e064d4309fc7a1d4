"""The package version, importable from any layer without the :mod:`lightspeed` facade."""

from __future__ import annotations

__version__ = "0.1.0"  # keep equal to [project].version in pyproject.toml
