"""Float-scale QONNX Quant: move the scale steps next to the integer work and merge them.

A QONNX ``Quant`` whose scale is not a power of two (or whose zero point is
not 0) imports as integer codes plus explicit scale steps: ``batchnorm``
nodes marked ``attrs["qscale"]`` (``x*scale + shift`` per channel, see
:mod:`lightspeed.ops.quant`). Left where the importer put them, a scale step
would sit between a cast to 8-bit codes and the next layer, and that layer
would multiply wide scaled values. This pass rewrites the graph the way
integer-only inference does (FINN, hls4ml's ``ApplyAlpha``):

* a uniform scale step before a dense/conv moves after it (``W(s*x + c) =
  s*(W x) + W c``), its bias joins the step, so the MAC sees the codes;
* a positive scale step after a Relu moves before it (``relu(s*x) = s*relu(x)``)
  and one after a max pool / reshape moves before it the other way;
* a step read by several nodes (a skip connection) is copied per reader;
* neighbouring steps merge, identity steps vanish.

What is left is ``dense/conv (integer codes) -> one scale step -> [relu] ->
cast to the next codes``: one per-channel multiply-add per layer. The step's
constants get explicit types (:func:`scale_type`): exact where they fit
``EXACT_WIDTH`` bits (a dequantization's ``scale`` and ``-zp*scale``), else rounded to ``SIGNIFICANT`` bits -- far below the float32
rounding qonnx itself does, so a code differs from qonnx's only where
qonnx's float32 arithmetic already lands within its own rounding error of a
rounding boundary. A graph input read by a scale step gets an explicit
input cast fine enough for the same guarantee.
"""

from __future__ import annotations

import math

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.fixed import MAX_WIDTH, FixedType
from lightspeed.ir.graph import Graph, Node

SIGNIFICANT = 30  # bits kept of a scale step's inexact constants
EXACT_WIDTH = 40  # constants that fit this many bits (float32 products: zp * scale) stay exact
_MOVES = ("maxpool", "flatten", "reshape", "transpose")  # a uniform step moves after these
_DATA = ("flatten", "reshape", "transpose")


def _is_step(node: Node | None) -> bool:
    return node is not None and node.op == "batchnorm" and bool(node.attrs.get("qscale"))


def _single_use(graph: Graph, t: str) -> bool:
    return len(graph.consumers(t)) == 1 and t not in graph.outputs


def _uniform(v: np.ndarray) -> bool:
    return bool(np.all(v == v.reshape(-1)[0]))


def _fresh(graph: Graph, base: str) -> str:
    names = {n.name for n in graph.nodes}
    name, i = base, 1
    while name in names:
        name, i = f"{base}_{i}", i + 1
    return name


def _remove(graph: Graph, node: Node) -> None:
    graph.nodes.remove(node)


def _merge_prev(graph: Graph, node: Node) -> bool:
    prev = graph.producer(node.inputs[0])
    if not _is_step(prev) or not _single_use(graph, node.inputs[0]):
        return False
    assert prev is not None
    s, b = node.params["scale"], node.params["shift"]
    node.params = {"scale": prev.params["scale"] * s, "shift": prev.params["shift"] * s + b}
    node.inputs = list(prev.inputs)
    _remove(graph, prev)
    return True


def _through_relu(graph: Graph, node: Node) -> bool:
    """relu -> step(s > 0, c): fold ``s`` into the step before the relu, keep ``+ c`` here."""
    relu = graph.producer(node.inputs[0])
    s = node.params["scale"]
    if relu is None or relu.op != "relu" or np.all(s == 1.0) or np.any(s <= 0):
        return False
    prev = graph.producer(relu.inputs[0])
    if not _is_step(prev) or not _single_use(graph, relu.inputs[0]):
        return False
    if not _single_use(graph, relu.outputs[0]):
        return False
    assert prev is not None
    prev.params = {"scale": prev.params["scale"] * s, "shift": prev.params["shift"] * s}
    node.params = {"scale": np.ones_like(s), "shift": node.params["shift"]}
    return True


def _drop_identity(graph: Graph, node: Node) -> bool:
    if not (np.all(node.params["scale"] == 1.0) and np.all(node.params["shift"] == 0.0)):
        return False
    x, y = node.inputs[0], node.outputs[0]
    if y in graph.outputs:
        prev = graph.producer(x)
        if prev is None or not _single_use(graph, x):
            return False
        prev.outputs = [y if t == x else t for t in prev.outputs]
    else:
        for c in graph.consumers(y):
            c.inputs = [x if t == y else t for t in c.inputs]
    _remove(graph, node)
    return True


def _layer_shift(layer: Node, c: np.ndarray) -> np.ndarray | None:
    """``W c``: what a per-input-channel constant ``c`` adds to each output channel."""
    w = layer.params["weight"]
    if layer.op == "dense":
        return c @ w
    if not np.any(c):
        return np.zeros(w.shape[0])
    if int(layer.attrs.get("group", 1)) != 1 or any(layer.attrs.get("pads", [])):
        return None  # zero padding is not a constant shift: keep the step before the conv
    return np.einsum("oi...,i->o", w, c)


def _through_layer(graph: Graph, node: Node) -> bool:
    """step(s uniform, c) -> dense/conv: the layer takes the codes, the step moves after it."""
    y = node.outputs[0]
    if not _single_use(graph, y):
        return False
    layer = graph.consumers(y)[0]
    s, c = node.params["scale"], node.params["shift"]
    if layer.op not in ("dense", "conv") or not _uniform(s):
        return False
    if layer.op == "dense" and len(graph.shapes.get(y, (0,))) != 1 and not _uniform(c):
        return False
    if layer.op == "dense" and layer.params["weight"].shape[0] != c.size:
        c = np.full(layer.params["weight"].shape[0], c.reshape(-1)[0])
    shift = _layer_shift(layer, c)
    if shift is None:
        return False
    n_out = layer.params["weight"].shape[1 if layer.op == "dense" else 0]
    if layer.op == "dense" and len(graph.shapes.get(layer.outputs[0], (n_out,))) != 1:
        if not _uniform(shift + layer.params.get("bias", np.zeros(n_out))):
            return False
        n_out = graph.shapes[layer.outputs[0]][0]
        shift = np.full(n_out, shift.reshape(-1)[0])
    bias = layer.params.pop("bias", np.zeros(n_out))
    if bias.size != n_out:
        bias = np.full(n_out, bias.reshape(-1)[0])
    layer.types.pop("bias", None)
    out = layer.outputs[0]
    acc = f"{out}__acc" if f"{out}__acc" not in graph.shapes else f"{out}__acc2"
    layer.inputs = [node.inputs[0]]
    layer.outputs = [acc]
    step = Node(
        _fresh(graph, f"{layer.name}_scale"), "batchnorm", [acc], [out],
        attrs={"qscale": True},
        params={"scale": np.full(n_out, float(s.reshape(-1)[0])), "shift": bias + shift},
    )  # fmt: skip
    graph.shapes[acc] = graph.shapes.get(out, ())
    graph.nodes.insert(graph.nodes.index(layer) + 1, step)
    _remove(graph, node)
    return True


def _through_move(graph: Graph, node: Node) -> bool:
    """step(s > 0 uniform, c uniform) -> max pool / reshape: swap them."""
    y = node.outputs[0]
    s, c = node.params["scale"], node.params["shift"]
    if not _single_use(graph, y) or not (_uniform(s) and _uniform(c)) or s.reshape(-1)[0] <= 0:
        return False
    move = graph.consumers(y)[0]
    if move.op not in _MOVES:
        return False
    if move.op == "transpose" and _sinks(graph, move):
        return False  # the transpose moves the other way (see _sink_transpose)
    z = move.outputs[0]
    shape = graph.shapes.get(z)
    if shape is None:
        return False
    n = shape[0] if shape else 1
    move.inputs = [node.inputs[0] if t == y else t for t in move.inputs]
    move.outputs = [y]
    graph.shapes[y] = shape
    node.inputs, node.outputs = [y], [z]
    node.params = {
        "scale": np.full(n, float(s.reshape(-1)[0])),
        "shift": np.full(n, float(c.reshape(-1)[0])),
    }
    graph.nodes.remove(node)
    graph.nodes.insert(graph.nodes.index(move) + 1, node)
    return True


def _split_fanout(graph: Graph, node: Node) -> bool:
    """A step read by several nodes becomes one copy per reader, so each can move on its own."""
    y = node.outputs[0]
    users = graph.consumers(y)
    if len(users) < 2 or y in graph.outputs:
        return False
    at = graph.nodes.index(node)
    for k, user in enumerate(users[1:], start=1):
        t = f"{y}__{k}"
        copy = Node(
            _fresh(graph, f"{node.name}_{k}"), "batchnorm", list(node.inputs), [t],
            attrs=dict(node.attrs), params={n: v.copy() for n, v in node.params.items()},
        )  # fmt: skip
        graph.nodes.insert(at + 1, copy)
        graph.shapes[t] = graph.shapes.get(y, ())
        user.inputs = [t if i == y else i for i in user.inputs]
    return True


_RULES = (_split_fanout, _merge_prev, _through_relu, _through_layer, _through_move, _drop_identity)
_ELEMENTWISE = ("relu", "quant")


def _sinks(graph: Graph, node: Node) -> bool:
    """Whether transpose ``node`` moves past its consumer: a relu or cast, or a uniform
    step that itself leads to one (a step before anything else moves past the transpose)."""
    users = graph.consumers(node.outputs[0])
    if len(users) != 1 or node.outputs[0] in graph.outputs or len(users[0].inputs) != 1:
        return False
    nxt = users[0]
    if nxt.op in _ELEMENTWISE or nxt.op == "transpose":
        return True
    if not (_is_step(nxt) and _uniform(nxt.params["scale"]) and _uniform(nxt.params["shift"])):
        return False
    after = graph.consumers(nxt.outputs[0])
    return len(after) == 1 and (after[0].op in _ELEMENTWISE or after[0].op == "transpose")


def _sink_transpose(graph: Graph, node: Node) -> bool:
    """transpose -> relu/cast/uniform step: swap them; two transposes that undo each other go.

    qonnx's channels-last ops import as ``transpose -> op -> transpose``; sinking the
    transposes through the element-wise ops between two such ops cancels them.
    """
    y = node.outputs[0]
    if not _single_use(graph, y):
        return False
    nxt = graph.consumers(y)[0]
    if (nxt.op == "transpose" and _single_use(graph, nxt.outputs[0])) or (
        nxt.op == "transpose" and nxt.outputs[0] in graph.outputs
    ):
        p1, p2 = node.attrs["perm"], nxt.attrs["perm"]
        if [p1[i] for i in p2] == list(range(len(p1))):
            x, z = node.inputs[0], nxt.outputs[0]
            if z in graph.outputs:
                return False
            for c in graph.consumers(z):
                c.inputs = [x if t == z else t for t in c.inputs]
            _remove(graph, node)
            _remove(graph, nxt)
            return True
        return False
    if not _sinks(graph, node):
        return False
    x, z = node.inputs[0], nxt.outputs[0]
    shape = graph.shapes.get(x)
    if shape is None:
        return False
    nxt.inputs, nxt.outputs = [x], [y]
    node.inputs, node.outputs = [y], [z]
    graph.shapes[y] = shape
    if _is_step(nxt):
        n = shape[0] if shape else 1
        nxt.params = {k: np.full(n, float(v.reshape(-1)[0])) for k, v in nxt.params.items()}
    i = graph.nodes.index(nxt)
    graph.nodes.remove(node)
    graph.nodes.insert(i, node)
    return True


def _frac_needed(v: np.ndarray, limit: int) -> int:
    """Fractional bits that represent every value of ``v`` exactly (``limit`` if more)."""
    for f in range(-8, limit + 1):
        if np.all(np.ldexp(v, f) == np.round(np.ldexp(v, f))):
            return f
    return limit


def scale_type(v: np.ndarray, significant: int = SIGNIFICANT) -> FixedType:
    """A type for a scale step's constants: exact if they fit ``significant`` bits, else rounded."""
    v = np.asarray(v, dtype=np.float64)
    top = float(np.max(np.abs(v))) if v.size else 0.0
    signed = bool(np.any(v < 0))
    if top == 0.0:
        return FixedType(1, 1, False, "RND_CONV", "SAT")
    integer = math.floor(math.log2(top)) + 1 + int(signed)
    exact = _frac_needed(v, EXACT_WIDTH - integer + 1)
    frac = exact if integer + exact <= EXACT_WIDTH else significant - integer
    frac = max(frac, 1 - integer)  # at least one bit
    return FixedType(integer + frac, integer, signed, "RND_CONV", "SAT")


def _input_cast(graph: Graph, name: str) -> None:
    """Give an input read by a scale step (then a cast to codes) a cast fine enough for it."""
    users = graph.consumers(name)
    while len(users) == 1 and users[0].op in _DATA:  # e.g. qonnx's channels-last Transpose
        users = graph.consumers(users[0].outputs[0])
    if not users or not all(_is_step(n) for n in users):
        return
    bound, step = 0.0, math.inf
    for n in users:
        casts = graph.consumers(n.outputs[0])
        if len(casts) != 1 or casts[0].op != "quant" or "result" not in casts[0].types:
            return
        t = casts[0].types["result"]
        s, c = n.params["scale"], n.params["shift"]
        lo, hi = t.min_value, t.max_value
        bound = max(bound, float(np.max(np.abs(np.concatenate([(lo - c) / s, (hi - c) / s])))))
        step = min(step, float(np.min(1.0 / np.abs(s))))
    integer = math.floor(math.log2(max(bound, 1e-300))) + 2
    frac = min(24 - math.floor(math.log2(step)), MAX_WIDTH - integer)
    cast = FixedType(integer + frac, integer, True, "RND_CONV", "SAT")
    cast_out = f"{name}__cast"
    for n in graph.consumers(name):
        n.inputs = [cast_out if i == name else i for i in n.inputs]
    graph.nodes.insert(0, Node(_fresh(graph, f"{name}_cast"), "quant", [name], [cast_out],
                               types={"result": cast}))  # fmt: skip
    graph.shapes[cast_out] = graph.shapes.get(name, graph.inputs[name])


def _check_left(graph: Graph, node: Node) -> None:
    """A scale step that stayed in front of a layer: say why, before widths explode."""
    for layer in graph.consumers(node.outputs[0]):
        if layer.op not in ("dense", "conv"):
            continue
        origin = node.name.removesuffix("_dequant")
        if not _uniform(node.params["scale"]):
            why = "a per-channel float activation scale cannot move past the layer's weights"
            fix = "quantize this activation per tensor"
        elif layer.op == "conv" and np.any(node.params["shift"]):
            why = (
                "a non-zero zero point before a zero-padded or grouped Conv: the padding is a "
                "real 0, not the zero-point code"
            )
            fix = "use a zero-point-free (symmetric or plain unsigned) activation quantizer here"
        else:
            continue
        raise UnsupportedOpError(
            f"node {origin!r} (QONNX Quant before {layer.name!r}): {why}; {fix}"
        )


def apply_scales(graph: Graph) -> Graph:
    """Rewrite and type the ``qscale`` steps (see the module docstring); in place."""
    if not any(_is_step(n) or n.attrs.get("channels_last") for n in graph.nodes):
        return graph
    float_scaled = any(_is_step(n) for n in graph.nodes)
    for node in graph.nodes:
        # a float Mul/Add by constants (or a BatchNorm) not fully typed in training, in a
        # float-scale model (e.g. FINN's input 2x - 1), is one more scale step, as exact as
        # qonnx's float32; its types are set below (exact where a trained type was)
        typed = all(r in node.types for r in ("weight", "bias"))
        if float_scaled and node.op == "batchnorm" and not _is_step(node) and not typed:
            node.attrs["qscale"] = True
            node.types = {}
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if node not in graph.nodes:
                continue
            if (node.op == "transpose" and _sink_transpose(graph, node)) or (
                _is_step(node) and any(r(graph, node) for r in _RULES)
            ):
                changed = True
                break
    for node in graph.nodes:
        if _is_step(node):
            _check_left(graph, node)
            node.types["weight"] = scale_type(node.params["scale"])
            node.types["bias"] = scale_type(node.params["shift"])
    for name in list(graph.inputs):
        _input_cast(graph, name)
    return graph
