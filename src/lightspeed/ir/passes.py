"""Graph rewrites as plain functions over a float :class:`~lightspeed.ir.Graph`.

Every frontend runs :func:`standard` on what it built, so IR from ONNX,
PyTorch QAT export or the tree frontend gets the same clean-up:

* :func:`drop_dead` removes nodes whose outputs reach no graph output;
* :func:`fold_affine` folds import-time ``affine`` nodes (``x*scale + shift``
  with constant, full-shape operands: BatchNorm, ``Mul``/``Add`` by a
  constant, HardSigmoid's scale) into the dense/conv/conv_transpose/batchnorm before them
  when that layer has no other consumer, else turns them into a per-channel
  ``batchnorm``; a trained type the fold changes is dropped.

Each pass works in place and returns the graph.
"""

from __future__ import annotations

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.ir.graph import Graph, Node
from lightspeed.ir.shapes import infer_shapes

_FOLD_INTO = ("dense", "conv", "conv_transpose", "batchnorm")


def drop_dead(graph: Graph) -> Graph:
    """Remove nodes whose outputs reach no graph output (e.g. unused branches)."""
    needed = set(graph.outputs)
    keep: list[Node] = []
    for n in reversed(graph.nodes):
        if any(t in needed for t in n.outputs):
            keep.append(n)
            needed.update(n.inputs)
    graph.nodes = keep[::-1]
    return graph


def _along(full: np.ndarray, axis: int) -> np.ndarray | None:
    """The vector ``v`` if ``full`` only varies along ``axis`` (else None)."""
    idx = tuple(slice(None) if i == axis else 0 for i in range(full.ndim))
    v = full[idx]
    shape = [1] * full.ndim
    shape[axis] = -1
    if np.array_equal(np.broadcast_to(v.reshape(shape), full.shape), full):
        return np.ascontiguousarray(v)
    return None


def _fold(prod: Node, s: np.ndarray, b: np.ndarray) -> None:
    """``prod``'s output times ``s`` plus ``b`` (vectors along its channel axis), in its params."""
    if prod.op == "batchnorm":
        prod.params["scale"] = prod.params["scale"] * s
        prod.params["shift"] = prod.params["shift"] * s + b
    else:
        w = prod.params["weight"]
        if prod.op == "conv_transpose":  # (C_in, C_out/g, *k): group i feeds outputs i*C_out/g...
            g = int(prod.attrs.get("group", 1))
            blocks = w.reshape(g, w.shape[0] // g, *w.shape[1:])
            scale = s.reshape(g, 1, w.shape[1], *([1] * (w.ndim - 2)))
            prod.params["weight"] = (blocks * scale).reshape(w.shape)
            n_out = g * w.shape[1]
        else:
            wshape = (1, -1) if prod.op == "dense" else (-1,) + (1,) * (w.ndim - 1)
            prod.params["weight"] = w * s.reshape(wshape)
            n_out = w.shape[1] if prod.op == "dense" else w.shape[0]
        prod.params["bias"] = prod.params.get("bias", np.zeros(n_out)) * s + b
    # values changed: the trained types no longer describe them
    changed = ("weight", "bias") if not np.all(s == 1.0) else ("bias",) if np.any(b != 0.0) else ()
    for role in changed:
        prod.types.pop(role, None)


def fold_affine(graph: Graph, exact: bool = False) -> Graph:
    """Fold or lower every ``affine`` node (see the module docstring).

    ``exact`` (a lightspeed QONNX export) folds an affine only into the layer
    it was exported from (same origin name), so every exported type survives.
    """
    for node in list(graph.nodes):
        if node.op != "affine":
            continue
        x, out = node.inputs[0], node.outputs[0]
        scale, shift = node.params["scale"], node.params["shift"]
        shape = scale.shape  # the IR shape of x (full-shape constants)
        prod = graph.producer(x)
        uses = len(graph.consumers(x)) + graph.outputs.count(x)
        if (
            prod is not None
            and prod.op in _FOLD_INTO
            and uses == 1
            and (not exact or prod.name == node.attrs.get("origin"))
        ):
            axis = len(shape) - 1 if prod.op == "dense" else 0
            s, b = _along(scale, axis), _along(shift, axis)
            if s is not None and b is not None:
                _fold(prod, s, b)
                prod.outputs = [out]
                graph.nodes.remove(node)
                continue
        s, b = _along(scale, 0), _along(shift, 0)
        if s is None or b is None:
            raise UnsupportedOpError(
                f"node {node.name!r}: ONNX {node.attrs.get('onnx_op', 'op')} with a constant "
                "operand that varies along more than the channel axis (axis 1) is not supported"
            )
        node.op = "batchnorm"
        node.params = {"scale": s, "shift": b}
        node.attrs = {}
    return graph


def standard(graph: Graph, exact: bool = False) -> Graph:
    """The pipeline every frontend runs: dead code, affine folding, dead code, shapes."""
    drop_dead(graph)
    fold_affine(graph, exact=exact)
    drop_dead(graph)
    return infer_shapes(graph)
