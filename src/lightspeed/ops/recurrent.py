"""Recurrent layers (ONNX ``LSTM``, ``GRU``) unrolled at import into registry ops.

A recurrent layer over a fixed sequence length is, in hardware as in the
emulator, the same cell written once per time step: ``dense`` layers for the
input and recurrent projections, ``slice`` for the gates, the ``sigmoid`` and
``tanh`` tables, and element-wise ``mul``/``add``/``sub``. Importing the layer
as that composition gives every backend the exact same arithmetic with no new
op: each step's state is a tensor of its own type (auto precision calibrates
each one; the firmware keeps each step's state in its pipeline registers,
exactly as the emulator keeps it). The sequence length is the compiled one: a
longer or shorter sequence is refused at the input shape check.

ONNX semantics (forward direction, default activations, no peepholes/clip):

* LSTM, gates ``i, o, f, c``: ``i = sigmoid(x Wiᵀ + h Riᵀ + b_i)`` (same for o, f),
  ``c̃ = tanh(x Wcᵀ + h Rcᵀ + b_c)``, ``C = f ⊙ C + i ⊙ c̃``, ``h = o ⊙ tanh(C)``;
* GRU, gates ``z, r, h``: ``z, r = sigmoid(...)``; ``h̃ = tanh(x Whᵀ + r ⊙ (h Rhᵀ + Rb_h) + Wb_h)``
  (``linear_before_reset=1``, PyTorch's form) or ``tanh(x Whᵀ + (r ⊙ h) Rhᵀ + ...)``;
  ``h = h̃ + z ⊙ (h_prev - h̃)``.

PyTorch exports ``batch_first=True`` layers as ``Transpose → LSTM → Squeeze →
Transpose`` with zero initial states computed from the input's shape;
:func:`batch_first_rewrite` folds that back into one ``layout=1`` node before
import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.ir.graph import Node
from lightspeed.ops.onnx_import import ImportState, OnnxGraph, dyn, f64, opt_const, unsupported

_PERM = [1, 0, 2]
# attr of the slices taking each time step of a recurrent layer's input (value: the layer)
SEQUENCE_ATTR = "sequence_of"


# -- the exporter's batch-first wrapping, folded back (runs on the ONNX graph before import)

_SQUEEZED = "lightspeed_squeeze_directions"  # marks a merged node whose Y drops the directions axis


def _attr(node: Any, key: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == key:
            return helper.get_attribute_value(a)
    return default


def _is_zero_state(og: OnnxGraph, name: str) -> bool:
    from onnx import numpy_helper

    if not name:
        return True
    if name in og.consts:
        return not np.any(og.consts[name])
    p = og.producer(name)
    if p is None or p.op_type != "ConstantOfShape":
        return False
    value = _attr(p, "value")
    return value is None or not np.any(numpy_helper.to_array(value))


def _squeeze_axes(og: OnnxGraph, node: Any) -> list[int]:
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1:
        c = og.consts.get(node.input[1])
        axes = None if c is None else np.asarray(c).reshape(-1)
    return [int(v) for v in axes] if axes is not None else []


def batch_first_rewrite(og: OnnxGraph) -> None:
    """``Transpose(1,0,2) → LSTM/GRU → Squeeze(1) → Transpose(1,0,2)`` with zero initial
    states becomes one batch-first node (``layout=1``) whose output drops the directions
    axis; the exporter's shape arithmetic for the zero states is then dead and removed."""
    from onnx import helper

    changed = False
    for n in [n for n in og.nodes if n.op_type in ("LSTM", "GRU")]:
        if _attr(n, "layout", 0) != 0:
            continue
        tr = og.producer(n.input[0])
        if tr is None or tr.op_type != "Transpose" or list(_attr(tr, "perm", [])) != _PERM:
            continue
        extra = [*n.input[4:], "", "", ""]
        if extra[0] or not all(_is_zero_state(og, t) for t in extra[1:3]):
            continue  # sequence_lens or a non-zero initial state: left to the importer
        sq = og.only_consumer(n.output[0], "Squeeze")
        back = og.only_consumer(sq.output[0], "Transpose") if sq is not None else None
        if back is None or _squeeze_axes(og, sq) != [1] or list(_attr(back, "perm", [])) != _PERM:
            continue
        if any(o and (og.consumers(o) or o in og.outputs) for o in n.output[1:]):
            continue  # the final states are used: left to the importer
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        attrs.update(layout=1, **{_SQUEEZED: 1})
        merged = helper.make_node(
            n.op_type, [tr.input[0], *n.input[1:4]], [back.output[0]], name=n.name, **attrs
        )
        pos = og.nodes.index(n)
        og.nodes.insert(pos, merged)
        for old in (back, sq, n):
            og.nodes.remove(old)
        changed = True
    if changed:
        _drop_dead(og)


def _drop_dead(og: OnnxGraph) -> None:
    """Remove nodes none of whose outputs is used (the exporter's shape arithmetic)."""
    while True:
        used = og.outputs | {t for n in og.nodes for t in n.input}
        dead = [n for n in og.nodes if not any(o in used for o in n.output if o)]
        if not dead:
            break
        og.nodes = [n for n in og.nodes if n not in dead]
    og._index()


# -- import: the unrolled cell


class Emitter:
    """Emits the nodes of one unrolled layer with unique names."""

    def __init__(self, st: ImportState, name: str) -> None:
        self.st, self.name, self.k = st, name, 0

    def node(self, op: str, ins: list[str], attrs=None, params=None, out: str | None = None) -> str:
        self.k += 1
        tag = f"{self.name}_{op}{self.k}"
        out = out or f"{tag}__out"
        self.st.emit(Node(tag, op, ins, [out], attrs=attrs or {}, params=params or {}))
        return out

    def rows(self, x: str, start: int, stop: int, **extra: Any) -> str:
        return self.node("slice", [x], {"starts": [start], "ends": [stop], "axes": [0], **extra})

    def step_input(self, x: str, t: int, features: int) -> str:
        # the step's slice names its layer: input checks name the compiled length with it
        step = self.rows(x, t, t + 1, **{SEQUENCE_ATTR: self.name})
        return self.node("reshape", [step], {"shape": [features]})


def _weights(onode, st: ImportState, name: str, gates: int):
    op = onode.op_type
    w = f64(st.const(onode.input[1]))
    r = f64(st.const(onode.input[2]))
    b = opt_const(st, onode, 3)
    if w.shape[0] != 1:
        raise unsupported(op, name, f"{w.shape[0]} directions (forward only)")
    h = r.shape[-1]
    b = np.zeros(2 * gates * h) if b is None else f64(b).reshape(-1)
    return w[0], r[0], b[: gates * h], b[gates * h :], h


def _check(onode, st: ImportState, a: dict, name: str, gates: int) -> str:
    op = onode.op_type
    if not all(st.is_const(t) for t in onode.input[1:3]):
        raise unsupported(op, name, "computed weights")
    if a.get("direction", b"forward") not in (b"forward", "forward"):
        raise unsupported(op, name, f"direction {a['direction']!r} (forward only)")
    for key in ("clip", "activations", "input_forget", "activation_alpha", "activation_beta"):
        if a.get(key):
            raise unsupported(op, name, f"attribute {key} (default activations, no clip)")
    extra = [t for t in onode.input[4:] if t]
    if extra:
        raise unsupported(
            op, name, "sequence_lens, initial states or peepholes (zero initial states only)"
        )
    if int(a.get("layout", 0)) != 1:
        raise unsupported(
            op, name,
            "layout 0 (sequence axis first, batch second); export with batch_first=True or "
            "put the batch first",
        )  # fmt: skip
    x = dyn(st, onode.input[0], op, name)
    if len(st.shapes[x]) != 2:
        raise unsupported(op, name, f"input of shape {list(st.shapes[x])} (sequence, features)")
    return x


def _outputs(e: Emitter, onode, a: dict, hs: list[str], h_size: int, c_last: str | None) -> None:
    """Y (sequence, 1, hidden) in layout 1, or (sequence, hidden) for a merged batch-first
    node; the final states (1, hidden) where used."""
    outs = [*onode.output, "", "", ""]
    if outs[0]:
        rows = [e.node("reshape", [h], {"shape": [1, h_size]}) for h in hs]
        seq = e.node("concat", rows, {"axis": 1}) if len(rows) > 1 else rows[0]
        shape = [len(hs), h_size] if a.get(_SQUEEZED) else [len(hs), 1, h_size]
        e.node("reshape", [seq], {"shape": shape}, out=outs[0])
    if outs[1]:
        e.node("reshape", [hs[-1]], {"shape": [1, h_size]}, out=outs[1])
    if outs[2] and c_last is not None:
        e.node("reshape", [c_last], {"shape": [1, h_size]}, out=outs[2])


def import_lstm(onode, st: ImportState, a: dict, name: str) -> None:
    x = _check(onode, st, a, name, 4)
    w, r, wb, rb, h_size = _weights(onode, st, name, 4)
    e = Emitter(st, name)
    hs, c = lstm_steps(e, x, st.shapes[x], w, r, wb + rb, h_size)
    _outputs(e, onode, a, hs, h_size, c)


def lstm_steps(
    e: Emitter, x: str, shape, w: np.ndarray, r: np.ndarray, b: np.ndarray, h_size: int
) -> tuple[list[str], str | None]:
    """The unrolled LSTM on ``x`` (steps, features); ONNX gate order i, o, f, c in the rows
    of ``w`` (4H, F) and ``r`` (4H, H), ``b`` the summed biases (4H). Returns every step's h
    and the last cell state."""
    steps, features = shape
    h = c = None
    hs = []
    for t in range(steps):
        gates = e.node("dense", [e.step_input(x, t, features)], params={"weight": w.T, "bias": b})
        if h is not None:
            gates = e.node("add", [gates, e.node("dense", [h], params={"weight": r.T})])
        i, o, f, g = (e.rows(gates, k * h_size, (k + 1) * h_size) for k in range(4))
        i, o, f = (e.node("sigmoid", [v]) for v in (i, o, f))
        ig = e.node("mul", [i, e.node("tanh", [g])])
        c = ig if c is None else e.node("add", [e.node("mul", [f, c]), ig])
        h = e.node("mul", [o, e.node("tanh", [c])])
        hs.append(h)
    return hs, c


def import_gru(onode, st: ImportState, a: dict, name: str) -> None:
    x = _check(onode, st, a, name, 3)
    w, r, wb, rb, h_size = _weights(onode, st, name, 3)
    e = Emitter(st, name)
    hs = gru_steps(e, x, st.shapes[x], w, r, wb, rb, h_size, int(a.get("linear_before_reset", 0)))
    _outputs(e, onode, a, hs, h_size, None)


def gru_steps(
    e: Emitter,
    x: str,
    shape,
    w: np.ndarray,
    r: np.ndarray,
    wb: np.ndarray,
    rb: np.ndarray,
    h_size: int,
    before_reset: int,
) -> list[str]:
    """The unrolled GRU on ``x`` (steps, features); ONNX gate order z, r, h in the rows of
    ``w`` (3H, F) and ``r`` (3H, H), input and recurrent biases apart. Returns every step's h."""
    steps, features = shape
    sl = [slice(k * h_size, (k + 1) * h_size) for k in range(3)]
    h = None
    hs = []
    for t in range(steps):
        xt = e.step_input(x, t, features)
        # z and r: input and recurrent projections together; the candidate's kept apart
        zr_b = wb[: 2 * h_size] + rb[: 2 * h_size]
        zr = e.node("dense", [xt], params={"weight": w[: 2 * h_size].T, "bias": zr_b})
        # with a zero state and the reset applied first, (r ⊙ 0) Rhᵀ + Rb_h = Rb_h
        cand_b = wb[sl[2]] + (rb[sl[2]] if h is None and not before_reset else 0.0)
        xh = e.node("dense", [xt], params={"weight": w[sl[2]].T, "bias": cand_b})
        if h is not None:
            zr = e.node("add", [zr, e.node("dense", [h], params={"weight": r[: 2 * h_size].T})])
        z = e.node("sigmoid", [e.rows(zr, 0, h_size)])
        r_gate = e.node("sigmoid", [e.rows(zr, h_size, 2 * h_size)])
        if h is None:
            rec = None
            if before_reset and np.any(rb[sl[2]]):  # r ⊙ (0 Rhᵀ + Rb_h): a per-unit scale
                scale = {"scale": rb[sl[2]].copy(), "shift": np.zeros(h_size)}
                rec = e.node("batchnorm", [r_gate], params=scale)
            cand = e.node("tanh", [xh if rec is None else e.node("add", [xh, rec])])
            h = e.node("sub", [cand, e.node("mul", [z, cand])])  # (1 - z) ⊙ h̃
        else:
            if before_reset:
                hr = e.node("dense", [h], params={"weight": r[sl[2]].T, "bias": rb[sl[2]]})
                rec = e.node("mul", [r_gate, hr])
            else:
                rh = e.node("mul", [r_gate, h])
                rec = e.node("dense", [rh], params={"weight": r[sl[2]].T, "bias": rb[sl[2]]})
            cand = e.node("tanh", [e.node("add", [xh, rec])])
            h = e.node("add", [cand, e.node("mul", [z, e.node("sub", [h, cand])])])
        hs.append(h)
    return hs


# -- the compiled sequence length, for input checks (emulator and server)


def sequence_inputs(graph: Any) -> dict[str, tuple[int, str]]:
    """Graph inputs whose first non-batch axis a recurrent layer unrolls over:
    ``{input: (compiled steps, layer name)}``.

    A step slice reads either the input itself or a tensor computed from it step by
    step (per-step ops keep the leading axis and the rank, e.g. a dense layer first)."""
    found: dict[str, tuple[int, str]] = {}
    for node in graph.nodes:
        layer = node.attrs.get(SEQUENCE_ATTR)
        if layer is None:
            continue
        tensor = node.inputs[0]
        steps = graph.shapes.get(tensor, (0,))[0]
        while tensor not in graph.inputs:
            p = graph.producer(tensor)
            if p is None or len(p.inputs) != 1 or p.op in ("transpose", "reshape", "flatten"):
                break
            before, after = graph.shapes.get(p.inputs[0]), graph.shapes.get(tensor)
            if (
                before is None
                or after is None
                or len(before) != len(after)
                or before[0] != after[0]
            ):
                break
            tensor = p.inputs[0]
        if tensor in graph.inputs and graph.inputs[tensor][0] == steps:
            found.setdefault(tensor, (int(steps), str(layer)))
    return found


def sequence_mismatch(graph: Any, name: str, shape: tuple[int, ...]) -> str | None:
    """Why a batch of shape ``shape`` (batch first) for input ``name`` cannot run, when its
    sequence length differs from the compiled one (and nothing else does); else None."""
    seq = sequence_inputs(graph).get(name)
    want = tuple(graph.inputs.get(name, ()))
    if seq is None or len(shape) != len(want) + 1 or tuple(shape[2:]) != want[1:]:
        return None
    steps, layer = seq
    if shape[1] == steps:
        return None
    return (
        f"input {name!r} is a sequence of {shape[1]} steps, but the model is compiled for "
        f"exactly {steps} (recurrent layer {layer!r} is unrolled over {steps} steps): pad or "
        f"cut the sequences to {steps} steps, or export and compile the model again for "
        f"{shape[1]}"
    )
