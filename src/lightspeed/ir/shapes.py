"""Shape inference over the graph, delegating to each op's ``infer_shape``."""

from __future__ import annotations

from lightspeed.errors import ShapeError
from lightspeed.ir.graph import Graph, toposort, validate


def infer_shapes(graph: Graph) -> Graph:
    """Fill ``graph.shapes`` for every tensor (in place; returns the graph) and sort nodes."""
    from lightspeed.ops import get_op  # ops depend on ir, not the other way round at import

    validate(graph)
    graph.nodes = toposort(graph)
    shapes = dict(graph.inputs)
    for name, shp in shapes.items():
        if any((not isinstance(d, int)) or d <= 0 for d in shp):
            raise ShapeError(
                f"input {name!r} has a dynamic or invalid shape {shp}; "
                "give a static shape with --input-shape (without the batch dimension)"
            )
    for node in graph.nodes:
        op = get_op(node.op)
        in_shapes = [shapes[t] for t in node.inputs]
        try:
            outs = op.infer_shape(node, in_shapes)
        except ShapeError as exc:
            raise ShapeError(f"node {node.name!r} ({node.op}): {exc}") from None
        if len(outs) != len(node.outputs):
            raise ShapeError(f"node {node.name!r}: op {node.op} produced {len(outs)} outputs")
        for t, s in zip(node.outputs, outs, strict=True):
            shapes[t] = tuple(int(d) for d in s)
    graph.shapes = shapes
    return graph
