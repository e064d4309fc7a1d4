"""Multithreshold: ``y = #{j : x >= T[c, j]}`` per channel ``c`` (FINN/QONNX ``MultiThreshold``).

The output is an unsigned integer count in ``0..B`` (B thresholds per
channel); the channel axis is ``attrs["axis"]`` of the IR shape (0, i.e.
channels-first, unless the ONNX layout put channels last). The contract on
fixed-point inputs: with ``x`` on the grid ``2^-F`` of its type, ``x >= T`` is
exactly ``m >= ceil(T * 2^F)``; those integer thresholds (clipped to one past
the input's range, where the answer no longer changes) are what the emulator,
the RTL and the HLS compare with.

Imported from ONNX:

* QONNX/FINN ``MultiThreshold(x, thresholds; out_scale, out_bias, data_layout)``
  -> ``multithreshold`` then a scale step ``out_scale * y + out_bias``;
* QONNX ``BipolarQuant`` on activations (``scale * (x >= 0 ? 1 : -1)``) ->
  ``multithreshold`` with the single threshold 0, then ``2*scale*y - scale``.

The scale steps are ``qscale`` batchnorms (see :mod:`lightspeed.frontends._scales`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.errors import ModelError, ShapeError, UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import (
    AutoContext,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    TrainedContext,
    merge,
)
from lightspeed.ops.onnx_import import ImportState, decode_str, dyn, full_const


def count_type(node: Node) -> FixedType:
    """The unsigned integer type that holds every count ``0..B``."""
    b = int(node.params["thresholds"].shape[1])
    width = max(int(b).bit_length(), 1)
    return FixedType(width, width, False, "TRN", "SAT")


def _axis(node: Node, ndim: int) -> int:
    return int(node.attrs.get("axis", 0)) % max(ndim, 1)


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    t = node.params["thresholds"]
    if t.ndim != 2:
        raise ShapeError(f"thresholds must be (channels, steps), got {t.shape}")
    c = ins[0][_axis(node, len(ins[0]))] if ins[0] else 1
    if t.shape[0] not in (1, c):
        raise ShapeError(f"{t.shape[0]} threshold rows for {c} channels")
    return [ins[0]]


def _per_channel(node: Node, v: np.ndarray, ndim: int) -> np.ndarray:
    """(C, B) thresholds shaped (1, ..., C, ..., 1, B) to broadcast over (batch, *shape, B)."""
    shape = [1] * (ndim + 1) + [v.shape[1]]
    shape[1 + _axis(node, ndim)] = v.shape[0]
    return v.reshape(shape)


def int_thresholds(node: Node, t_in: FixedType) -> np.ndarray:
    """``ceil(T * 2^F)`` clipped to ``[min_int, max_int + 1]`` of the input type (int64)."""
    v = np.ceil(np.ldexp(np.asarray(node.params["thresholds"], dtype=np.float64), t_in.frac))
    return np.clip(v, t_in.min_int, t_in.max_int + 1).astype(np.int64)


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    t = _per_channel(node, node.params["thresholds"], x.ndim - 1)
    return [np.sum(x[..., None] >= t, axis=-1).astype(np.float64)]


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    t = _per_channel(node, int_thresholds(node, x.t), x.m.ndim - 1)
    count = np.sum(np.asarray(x.m)[..., None] >= t, axis=-1).astype(np.int64)
    return [Fx(count, prec["result"])]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    return merge(ctx.fixed, {"result": count_type(node)})


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    return {"result": ctx.fixed.get("result", count_type(node))}


def _cost(node: Node, ctx: CostContext) -> Cost:
    n = int(np.prod(ctx.in_shapes[0])) if ctx.in_shapes[0] else 1
    b = int(node.params["thresholds"].shape[1])
    return Cost(
        params=int(node.params["thresholds"].size), adds=n * b, bops=n * b * ctx.in_types[0].width
    )


def _step(st: ImportState, x: str, out: str, scale: float, shift: float, name: str, op: str):
    """A uniform ``qscale`` step (see :mod:`lightspeed.frontends._scales`)."""
    shape = st.shapes[x]
    st.emit(Node(
        name, "affine", [x], [out], attrs={"onnx_op": op, "origin": name, "qscale": True},
        params={"scale": full_const(np.asarray(scale), shape, op, name),
                "shift": full_const(np.asarray(shift), shape, op, name)},
    ))  # fmt: skip


def convert_multithreshold(onode: Any, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "MultiThreshold", name)
    if len(onode.input) < 2 or not st.is_const(onode.input[1]):
        raise UnsupportedOpError(
            f"node {name!r} (MultiThreshold): the thresholds must be a constant input"
        )
    t = np.asarray(st.const(onode.input[1]), dtype=np.float64)
    if t.ndim != 2:
        raise ModelError(f"node {name!r} (MultiThreshold): thresholds {t.shape} are not (C, B)")
    shape = st.shapes[x]
    layout = decode_str(a.get("data_layout", ""))
    rank = len(shape) + 1
    if not layout:  # qonnx's guess from the rank
        layout = {2: "NC", 3: "NWC", 4: "NCHW"}.get(rank, "NC")
    if len(layout) != rank or layout[0] != "N" or "C" not in layout:
        raise UnsupportedOpError(
            f"node {name!r} (MultiThreshold): data_layout {layout!r} does not fit the input "
            f"of rank {rank} with the batch axis first"
        )
    axis = layout.index("C") - 1
    out = onode.output[0]
    scale, bias = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
    plain = scale == 1.0 and bias == 0.0
    counts = out if plain else f"{out}__counts"
    node = Node(name, "multithreshold", [x], [counts], attrs={"axis": axis},
                params={"thresholds": t})  # fmt: skip
    st.emit(node)
    if not plain:
        _step(st, counts, out, scale, bias, f"{name}_scale", "MultiThreshold")


def convert_bipolar_activation(st: ImportState, onode: Any, scale: np.ndarray, name: str) -> None:
    """BipolarQuant on activations: ``scale * (x >= 0 ? 1 : -1)`` as a count of one threshold."""
    s = np.asarray(scale, dtype=np.float64)
    if s.size != 1:
        raise UnsupportedOpError(
            f"node {name!r}: BipolarQuant on activations with a per-channel scale is not "
            "supported; use one scale per tensor"
        )
    x = dyn(st, onode.input[0], "BipolarQuant", name)
    sign = f"{onode.output[0]}__sign"
    st.emit(Node(name, "multithreshold", [x], [sign], attrs={"axis": 0},
                 params={"thresholds": np.zeros((1, 1))}))  # fmt: skip
    v = float(s.reshape(-1)[0])
    _step(st, sign, onode.output[0], 2.0 * v, -v, f"{name}_scale", "BipolarQuant")


MULTITHRESHOLD = Op(
    name="multithreshold",
    roles=("result",),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    trained_precision=_trained,
    cost=_cost,
    fusable=True,
    onnx_import={"MultiThreshold": convert_multithreshold},
    doc="count of thresholds T[c, j] <= x per channel (QONNX MultiThreshold, BipolarQuant on "
    "activations); result unsigned 0..B",
)
