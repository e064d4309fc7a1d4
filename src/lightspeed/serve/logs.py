"""Structured server logs: logfmt (default) or JSON lines on stderr.

Call sites keep the message a constant and pass values as fields::

    log.info("model loaded", extra=kv(model=name, versions=[1, 2]))

which prints ``time=... level=info logger=lightspeed.serve msg="model loaded" model=mlp
versions=1,2`` (logfmt) or ``{"time": ..., "level": "info", ..., "model": "mlp",
"versions": [1, 2]}`` (``--log-format json``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

FORMATS = ("logfmt", "json")


def kv(**fields: Any) -> dict[str, Any]:
    """The ``extra=`` argument of a logging call that carries these fields."""
    return {"fields": fields}


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return str(value)


def logfmt_value(value: Any) -> str:
    """One logfmt value: quoted when it holds spaces, quotes, '=' or is empty."""
    s = _text(value)
    if s and not any(c in s for c in ' "=\\') and s.isprintable():
        return s
    escaped = s.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


class _Formatter(logging.Formatter):
    def record_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat("T", "milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in (getattr(record, "fields", None) or {}).items():
            out[k if k not in out else f"field_{k}"] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return out


class LogfmtFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{k}={logfmt_value(v)}" for k, v in self.record_fields(record).items() if v is not None
        )


class JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {
            k: list(v) if isinstance(v, (tuple, set, frozenset)) else v
            for k, v in self.record_fields(record).items()
        }
        return json.dumps(fields, default=str)


def setup_logging(level: str = "INFO", fmt: str = "logfmt") -> None:
    """Send every log record to stderr in ``fmt`` (one of :data:`FORMATS`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("hpack").setLevel(logging.WARNING)  # a line per header otherwise
