"""The HLS emitter registry: one function per op, registered with :func:`register`.

An emitter gets an :class:`EmitContext` for one node, adds what it needs to
the :class:`~lightspeed.firmware.hls.writer.Writer` (typedefs, constant
arrays, index tables) and returns the body lines of the node's C++ function
``layer_<node>(x..., y)``. :func:`load_emitters` imports every ``emit_*``
module of this package, so a new op family only needs a new
``emit_<family>.py`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lightspeed.firmware.emitters import EmitterRegistry
from lightspeed.fixed import FixedType
from lightspeed.ir.graph import Node, Shape

if TYPE_CHECKING:
    from lightspeed.firmware.hls.writer import Writer


@dataclass
class EmitContext:
    """What an HLS emitter knows about its node (input ``x`` / ``x0, x1, ...``, output ``y``)."""

    w: Writer  # typedefs, constant arrays and index tables go here
    node: Node
    prec: dict[str, FixedType]  # role -> type
    qparams: dict[str, np.ndarray]  # param -> integers at the role's scale
    role: dict[str, str]  # role -> C++ typedef name
    name: str  # C++ identifier prefix of the node's constants
    in_types: list[FixedType]
    in_ctypes: list[str]  # C++ typedef names of the inputs
    out_ctype: str  # C++ typedef name of the output
    in_shapes: list[Shape]
    out_shape: Shape

    @property
    def n_out(self) -> int:
        """Number of output elements."""
        return int(np.prod(self.out_shape)) if len(self.out_shape) else 1


Emitter = Callable[[EmitContext], list[str]]
EMITTERS = EmitterRegistry("lightspeed.firmware.hls", Path(__file__).parent)
register = EMITTERS.register


def load_emitters() -> None:
    """Import every ``emit_*`` module of this package (each registers its emitters)."""
    EMITTERS.load()


def supported_ops() -> frozenset[str]:
    """The ops the HLS backend can write: those with a registered emitter."""
    load_emitters()
    return frozenset(EMITTERS)
