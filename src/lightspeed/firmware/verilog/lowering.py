"""Lower a quantized graph to a pipelined netlist, one emitter per op.

Tensors are NumPy object arrays of :class:`~lightspeed.firmware.netlist.Sig`
in the IR layout, so reshape/transpose/flatten/concat are plain array moves
(pure wiring). Each emitter gets its node's precision and integer parameters
and returns its output tensors; the driver places pipeline registers after
every layer. Where registers go is the op's business (:class:`~lightspeed.ops.base.Op`):
a ``fusable`` op that directly follows a layer shares its stage, a ``wiring``
op has no register of its own.

Emitters register themselves with :func:`register`; :func:`load_emitters`
imports every ``emit_*`` module of this package, so a new op family only
needs a new ``emit_<family>.py`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.emitters import EmitterRegistry
from lightspeed.firmware.netlist import Netlist, Sig, Timing
from lightspeed.firmware.reuse import layer_factors
from lightspeed.fixed import FixedType
from lightspeed.ir.graph import Node
from lightspeed.ops import get_op
from lightspeed.quantize.model import QuantizedModel

Emitter = Callable[["EmitContext", list[np.ndarray]], list[np.ndarray]]
EMITTERS = EmitterRegistry("lightspeed.firmware.verilog", Path(__file__).parent)
register = EMITTERS.register


@dataclass
class EmitContext:
    nl: Netlist
    node: Node
    prec: dict[str, FixedType]
    qparams: dict[str, np.ndarray]
    in_types: list[FixedType]
    opts: FirmwareOptions
    reuse: int = 1  # this layer's reuse factor (lightspeed.firmware.reuse)


@dataclass
class Design:
    """A lowered model: the netlist plus what the writers and reports need."""

    nl: Netlist
    opts: FirmwareOptions
    inputs: dict[str, dict[str, Any]]  # tensor -> {"port", "type", "shape"}
    outputs: dict[str, dict[str, Any]]
    latency: int
    layer_stages: dict[str, int] = field(default_factory=dict)
    ii: int = 1  # clocks between input vectors (the largest reuse factor)


def load_emitters() -> None:
    """Import every ``emit_*`` module of this package (each registers its emitters)."""
    EMITTERS.load()


def port_name(prefix: str, tensor: str) -> str:
    import re

    clean = re.sub(r"[^A-Za-z0-9_]", "_", tensor)
    return f"{prefix}_{clean}"


def check_supported(q: QuantizedModel) -> None:
    load_emitters()
    bad = sorted({n.op for n in q.graph.nodes if n.op not in EMITTERS})
    if bad:
        raise UnsupportedOpError(
            f"firmware generation does not support op(s) {', '.join(bad)} "
            f"(nodes {', '.join(n.name for n in q.graph.nodes if n.op in bad)}); supported: "
            f"{', '.join(sorted(EMITTERS))}. Replace them in the model or use the emulator/serving path."
        )


def lower(q: QuantizedModel, opts: FirmwareOptions | None = None) -> Design:
    """Trace the whole quantized model ``q`` into a pipelined netlist."""
    opts = opts or FirmwareOptions()
    check_supported(q)
    nl = Netlist(Timing(period=opts.clock_period))
    factors = layer_factors(q, opts)
    nl.ii = max(factors.values(), default=1)
    env: dict[str, np.ndarray] = {}
    inputs = {}
    for name, shape in q.graph.inputs.items():
        in_t = q.input_types[name]
        port = port_name("in", name)
        arr = np.empty(shape, dtype=object)
        for i, idx in enumerate(np.ndindex(*shape)):
            arr[idx] = nl.input(port, i, in_t)
        env[name] = arr
        inputs[name] = {"port": port, "type": in_t, "shape": tuple(shape)}
    consumers: dict[str, list[Node]] = {}
    for n in q.graph.nodes:
        for t in n.inputs:
            consumers.setdefault(t, []).append(n)
    stages = {}
    for node in q.graph.nodes:
        nl.layer = node.name
        ctx = EmitContext(
            nl,
            node,
            q.precision.get(node.name, {}),
            q.qparams.get(node.name, {}),
            [q.tensor_types[t] for t in node.inputs],
            opts,
            factors.get(node.name, 1),
        )
        outs = EMITTERS[node.op](ctx, [env[t] for t in node.inputs])
        for t, arr in zip(node.outputs, outs, strict=True):
            users = consumers.get(t, [])
            fuse_next = len(users) == 1 and get_op(users[0].op).fusable and t not in q.graph.outputs
            if not get_op(node.op).wiring and not fuse_next:
                arr = nl.barrier(arr)
            _check_scale(nl, arr, q.tensor_types[t], node)
            env[t] = arr
            sigs = [s for s in arr.flat if isinstance(s, Sig)]
            stages[node.name] = max((nl.net(s).stage for s in sigs), default=0)
    outputs = {}
    for name in q.graph.outputs:
        out_t = q.tensor_types[name]
        port = port_name("out", name)
        nl.add_output(port, out_t, env[name])
        outputs[name] = {"port": port, "type": out_t, "shape": tuple(env[name].shape)}
    latency = nl.finish()
    return Design(nl, opts, inputs, outputs, latency, stages, nl.ii)


def _check_scale(nl: Netlist, arr: np.ndarray, t: FixedType, node: Node) -> None:
    for s in arr.flat:
        if isinstance(s, Sig) and s.frac != t.frac:
            raise AssertionError(
                f"node {node.name}: emitted signal at scale {s.frac}, tensor type {t} has {t.frac}"
            )
