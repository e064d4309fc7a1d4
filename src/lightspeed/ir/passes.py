"""Graph rewrites as plain functions over a float :class:`~lightspeed.ir.Graph`.

Every frontend runs :func:`standard` on what it built, so IR from ONNX,
PyTorch QAT export or the tree frontend gets the same clean-up:

* :func:`drop_dead` removes nodes whose outputs reach no graph output;
* :func:`fold_affine` folds import-time ``affine`` nodes (``x*scale + shift``
  with constant, full-shape operands: BatchNorm, ``Mul``/``Add`` by a
  constant, HardSigmoid's scale) into the dense/conv/conv_transpose/batchnorm before them
  when that layer has no other consumer, else turns them into a per-channel
  ``batchnorm``. A fold that would change a trained type's values (a
  BatchNorm after a layer with trained weights) is not done: the affine
  becomes its own ``batchnorm`` instead; a trained bias added after a
  ``MatMul`` becomes the layer's bias with its type.

Each pass works in place and returns the graph.
"""

from __future__ import annotations

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.fixed import FixedType
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


def _fold(prod: Node, s: np.ndarray, b: np.ndarray, shift_type: FixedType | None) -> None:
    """``prod``'s output times ``s`` plus ``b`` (vectors along its channel axis), in its params."""
    bias_key = "shift" if prod.op == "batchnorm" else "bias"
    had_bias = bias_key in prod.params and np.any(prod.params[bias_key] != 0.0)
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
    if not had_bias and np.any(b != 0.0) and shift_type is not None:
        prod.types["bias"] = shift_type  # MatMul + Add(Quant(bias)): the bias is the constant


def _keeps_types(prod: Node, s: np.ndarray, b: np.ndarray) -> bool:
    """Whether folding ``x*s + b`` into ``prod`` leaves every trained type of it true."""
    bias_key = "shift" if prod.op == "batchnorm" else "bias"
    scaled = not np.all(s == 1.0)
    has_bias = bias_key in prod.params and np.any(prod.params[bias_key] != 0.0)
    if scaled and "weight" in prod.types:
        return False
    return not ("bias" in prod.types and has_bias and (scaled or np.any(b != 0.0)))


def _lowered_types(node: Node, s: np.ndarray, b: np.ndarray) -> dict[str, FixedType]:
    """Trained types of an affine lowered to a batchnorm: its constants' own, trivial ones exact.

    A ``scale`` of all ones (an ``Add``) needs no training to be exact, nor a
    ``shift`` of all zeros (a ``Mul``); the other roles keep the constant's
    trained type if it had one.
    """
    types: dict[str, FixedType] = {}
    if "scale" in node.types:
        types["weight"] = node.types["scale"]
    elif np.all(s == 1.0):
        types["weight"] = FixedType(2, 2)  # holds 1 exactly
    if "shift" in node.types:
        types["bias"] = node.types["shift"]
    elif np.all(b == 0.0):
        types["bias"] = FixedType(1, 1)  # holds 0 exactly
    return types


def fold_affine(graph: Graph, exact: bool = False) -> Graph:
    """Fold or lower every ``affine`` node (see the module docstring).

    ``exact`` (a lightspeed QONNX export) folds an affine only into the layer
    it was exported from (same origin name), so every exported type survives.
    Otherwise an affine folds only where the layer's trained types stay true:
    a BatchNorm (or ``Mul`` by a float constant) after a layer with trained
    weights stays a separate ``batchnorm``, since folding it would change the
    weights the model was trained with.
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
            and not node.attrs.get("qscale")  # a Quant's scale step stays its own node
        ):
            axis = len(shape) - 1 if prod.op == "dense" else 0
            s, b = _along(scale, axis), _along(shift, axis)
            if s is not None and b is not None and (exact or _keeps_types(prod, s, b)):
                _fold(prod, s, b, node.types.get("shift"))
                prod.outputs = [out]
                graph.nodes.remove(node)
                continue
        s, b = _along(scale, 0), _along(shift, 0)
        if s is None or b is None:
            raise UnsupportedOpError(
                f"node {node.name!r}: ONNX {node.attrs.get('onnx_op', 'op')} with a constant "
                "operand that varies along more than the channel axis (axis 1) is not supported"
            )
        node.types = _lowered_types(node, s, b)
        node.op = "batchnorm"
        node.params = {"scale": s, "shift": b}
        node.attrs = {"qscale": True} if node.attrs.get("qscale") else {}
    return graph


def standard(graph: Graph, exact: bool = False) -> Graph:
    """The pipeline every frontend runs: dead code, affine folding, dead code, shapes."""
    drop_dead(graph)
    fold_affine(graph, exact=exact)
    drop_dead(graph)
    return infer_shapes(graph)
