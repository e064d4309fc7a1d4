"""Exceptions raised for user mistakes and unmet requirements.

Every error a user can cause derives from :class:`LightspeedError`; the CLI
prints it as one line and exits non-zero, the server maps it to a status code.
"""

from __future__ import annotations


class LightspeedError(Exception):
    """Base class: a problem with the user's input or environment, with a fix."""


class FixedTypeError(LightspeedError, ValueError):
    """A fixed-point type string does not parse or is out of the supported range."""


class ModelError(LightspeedError):
    """A model file is malformed, unreadable, or inconsistent."""


class UnsupportedOpError(ModelError):
    """The model uses an operator lightspeed does not implement."""


class ShapeError(LightspeedError, ValueError):
    """Shapes do not match (model graph, input arrays, calibration data)."""


class InputError(LightspeedError, ValueError):
    """Input data is invalid (wrong dtype, NaN/Inf, wrong shape, wrong file)."""


class ConfigError(LightspeedError, ValueError):
    """A precision/config file or option is invalid."""


class ToolMissingError(LightspeedError):
    """An optional dependency or external tool is not installed; the message says how to install it."""


class ArtifactError(LightspeedError):
    """A compiled-model or firmware directory is missing, incomplete, or does not match."""


def require(module: str, extra: str, what: str = ""):
    """Import an optional dependency or raise ToolMissingError with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        need = f" for {what}" if what else ""
        raise ToolMissingError(
            f"the optional dependency '{module}' is needed{need}: pip install 'lightspeed[{extra}]'"
        ) from exc
