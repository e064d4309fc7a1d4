"""Model IR: a small graph of named nodes and tensors (see :mod:`lightspeed.ir.graph`)."""

from lightspeed.ir.graph import Graph, Node, Shape, toposort, validate
from lightspeed.ir.shapes import infer_shapes

__all__ = ["Graph", "Node", "Shape", "infer_shapes", "toposort", "validate"]
