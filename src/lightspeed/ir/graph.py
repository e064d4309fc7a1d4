"""The model graph: named tensors flowing between named nodes.

Shapes never include the batch dimension; every tensor implicitly has a
leading batch axis. Layout follows the source framework (ONNX/PyTorch:
channels-first). Nodes are kept in topological order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightspeed.errors import ModelError
from lightspeed.fixed import FixedType

Shape = tuple[int, ...]


@dataclass
class Node:
    """One operation: ``outputs = op(inputs; attrs, params)``.

    ``params`` hold float constants (weights, biases, scales); ``attrs`` hold
    plain JSON-able settings (strides, axis, table sizes); ``types`` hold the
    roles the source model fixed (trained types of a QAT/QONNX model, the cast
    type of a ``quant`` node), parsed once by the frontend.
    """

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    types: dict[str, FixedType] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.op}, {self.inputs} -> {self.outputs})"


@dataclass
class Graph:
    """A typed dataflow graph. Build it, then call :func:`lightspeed.ir.infer_shapes`."""

    name: str
    inputs: dict[str, Shape]
    outputs: list[str]
    nodes: list[Node]
    shapes: dict[str, Shape] = field(default_factory=dict)
    # types the source model states for its inputs (QONNX datatype annotations)
    input_types: dict[str, FixedType] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ModelError(f"no node named {name!r}; nodes are: {', '.join(self.node_names)}")

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def copy(self) -> Graph:
        return copy.deepcopy(self)

    def summary(self) -> str:
        lines = [f"graph {self.name}: inputs {self.inputs} -> outputs {self.outputs}"]
        for n in self.nodes:
            shp = [self.shapes.get(t) for t in n.outputs]
            lines.append(f"  {n.name:<24} {n.op:<14} {n.inputs} -> {n.outputs} {shp}")
        return "\n".join(lines)


def toposort(graph: Graph) -> list[Node]:
    """Nodes in an order where every input is produced before use; errors on cycles/dangling."""
    available = set(graph.inputs)
    pending = list(graph.nodes)
    ordered: list[Node] = []
    while pending:
        ready = [n for n in pending if all(t in available for t in n.inputs)]
        if not ready:
            missing = sorted({t for n in pending for t in n.inputs if t not in available})
            raise ModelError(
                f"graph {graph.name!r} has tensors that are never produced (or a cycle): "
                f"{', '.join(missing[:5])}"
            )
        for n in ready:
            ordered.append(n)
            available.update(n.outputs)
            pending.remove(n)
    return ordered


def validate(graph: Graph) -> None:
    """Structural checks: unique names, single producers, outputs reachable."""
    seen: set[str] = set()
    produced: set[str] = set(graph.inputs)
    for n in graph.nodes:
        if n.name in seen:
            raise ModelError(f"duplicate node name {n.name!r}")
        seen.add(n.name)
        for t in n.outputs:
            if t in produced:
                raise ModelError(f"tensor {t!r} is produced twice (node {n.name!r})")
            produced.add(t)
    for t in graph.outputs:
        if t not in produced:
            raise ModelError(f"graph output {t!r} is not produced by any node")
    toposort(graph)
