"""Reuse factor: which layers are time-multiplexed, and the design's initiation interval.

A dense layer with reuse factor ``R`` computes its outputs in ``R`` groups, one
group per clock, on one group's worth of hardware (II = R). Where a factor comes
from, most specific first:

1. ``FirmwareOptions.layer_reuse`` (``lightspeed firmware --reuse fc1=4``);
2. the node attribute ``reuse`` (``layers: {fc1: {reuse: 4}}`` in the compile config);
3. ``FirmwareOptions.reuse`` (``--reuse 4``), for every dense layer.

The whole design accepts a vector every ``max(R)`` clocks; a layer with a smaller
factor idles for the remaining phases. Only dense layers share hardware so far:
a factor named for any other op is refused.
"""

from __future__ import annotations

import math

from lightspeed.errors import ConfigError
from lightspeed.firmware.config import FirmwareOptions

REUSE_OPS = ("dense",)


def layer_factors(q, opts: FirmwareOptions) -> dict[str, int]:
    """Node name -> reuse factor, for every layer that time-multiplexes (factor > 1)."""
    nodes = {n.name: n for n in q.graph.nodes}
    explicit = dict(opts.layer_reuse)
    for name, node in nodes.items():
        if "reuse" in node.attrs and name not in explicit:
            explicit[name] = node.attrs["reuse"]
    out: dict[str, int] = {}
    for name, rf in explicit.items():
        if name not in nodes:
            raise ConfigError(
                f"reuse factor for layer {name!r}, which is not in the model; "
                f"layers are {', '.join(nodes)}"
            )
        if isinstance(rf, bool) or not isinstance(rf, int) or rf < 1:
            raise ConfigError(
                f"layer {name!r}: reuse factor {rf!r} is not a positive integer (e.g. reuse: 4)"
            )
        if nodes[name].op not in REUSE_OPS and rf > 1:
            raise ConfigError(
                f"layer {name!r} ({nodes[name].op}): a reuse factor is implemented for "
                f"{', '.join(REUSE_OPS)} layers only; remove it from this layer (it stays fully "
                "parallel) or see docs/firmware.md#reuse-factor"
            )
    for name, node in nodes.items():
        rf = explicit.get(name, opts.reuse if node.op in REUSE_OPS else 1)
        if rf > 1:
            out[name] = int(rf)
    return out


def design_ii(q, opts: FirmwareOptions) -> int:
    """Clocks between input vectors of the whole design (the largest reuse factor)."""
    return max(layer_factors(q, opts).values(), default=1)


def groups(n_out: int, rf: int) -> tuple[int, int]:
    """(groups actually used, outputs per group) of a layer with ``n_out`` outputs at
    factor ``rf``: output j is slot ``j % per`` of group ``j // per``."""
    g = max(1, min(rf, n_out))
    per = math.ceil(n_out / g)
    return math.ceil(n_out / per), per
