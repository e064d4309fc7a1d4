"""`lightspeed <verb>`: a thin shell over the package API.

Each subsystem registers its own verbs in a small ``commands`` module so the
CLI stays one dispatch table; handlers import heavy dependencies lazily so
``lightspeed --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lightspeed.errors import LightspeedError

# Modules with a ``register(subparsers)`` function, in the order verbs are listed.
_COMMAND_MODULES = (
    "lightspeed.commands",
    "lightspeed.firmware.commands",
    "lightspeed.serve.commands",
    "lightspeed.data.commands",
    "lightspeed.bench.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightspeed",
        description="Real-time ML for science: quantize, emulate bit-exactly, "
        "generate firmware, serve and benchmark models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subsystem not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LightspeedError as exc:
        print(f"lightspeed {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lightspeed {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
