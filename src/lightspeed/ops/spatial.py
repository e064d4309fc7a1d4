"""Spatial data movement: Pad, Slice, Resize (nearest), DepthToSpace, SpaceToDepth.

Every op here is a gather: an index map (:func:`index_map`) gives, for each
output element, the flat index of the input element it copies, or ``-1`` for
a zero (padding). Values and types pass through unchanged (zero is exact in
every type), so these ops are pure wiring in firmware. Axes are IR axes
(without the batch axis); layouts are whatever the tensor has (ONNX
channels-first, Keras channels-last: the frontend gives the axes).

- ``pad`` (attr ``pads``: begin of each axis, then end of each axis, >= 0;
  attr ``mode``; attr ``value``, default 0): ``constant`` padding (ONNX
  ``Pad``, torch ``F.pad(value=v)``, Keras ZeroPadding), or
  ``reflect``/``edge``/``wrap`` (ONNX's modes, NumPy's ``np.pad`` rules),
  which copy input elements. A non-zero ``value`` is put on the input type's
  grid once (:func:`pad_fill`: nearest, ties up); where the result lies
  outside the input type's range, the output type gets the integer bits (and
  sign) it needs, with the input's fraction and modes, so the input values
  pass through unchanged. Float semantics use the exact value. ``pad`` has a
  ``result`` role for this: a type pinned by the user (a fixed precision or
  a layer config) converts the padded tensor to it like any cast.
- ``slice`` (attrs ``starts``, ``ends``, optional ``steps`` (default 1) and
  ``axes`` (default every axis), one entry per listed axis): axis ``a`` keeps
  the input indices ``range(start, end, step)``, all inside the axis; axes
  not listed are kept whole (ONNX ``Slice`` with constant operands,
  normalized on import; Keras Cropping).
- ``resize`` (attr ``scales``, one integer >= 1 per axis): nearest-neighbour
  upsampling, output index ``i`` reads input index ``i // scale`` (ONNX
  ``Resize``/``Upsample`` mode nearest where its coordinate rule gives exactly
  that; Keras UpSampling1D/2D).
- ``take`` (attrs ``axis``, ``indices``: constant integers; a scalar index drops
  the axis): ``np.take`` on one non-batch axis (ONNX ``Gather`` with constant
  indices, e.g. torch's ``y[:, -1]``; a fixed graph's sender/receiver lists).
- ``depth_to_space`` / ``space_to_depth`` (attrs ``blocksize``, ``mode`` DCR
  or CRD) on (C, H, W): ONNX ``DepthToSpace`` semantics; ``space_to_depth``
  is its exact inverse in the same mode (ONNX ``SpaceToDepth`` is DCR).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from lightspeed.errors import ModelError, ShapeError
from lightspeed.fixed import FixedType, requantize, type_for_int_range
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import Fx, Op, Precision, QParams
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import (
    BATCH,
    ImportState,
    decode_str,
    dyn,
    opt_const,
    unsupported,
)

_BIG = 2**62  # "to the end" in ONNX Slice ends
PAD_MODES = ("constant", "reflect", "edge", "wrap")
_NP_MODES: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect",
    "edge": "edge",
    "wrap": "wrap",
}


def _per_axis(node: Node, key: str, rank: int) -> list[int]:
    v = [int(a) for a in node.attrs[key]]
    if len(v) != rank:
        raise ShapeError(f"{key} {v} has {len(v)} entries for {rank} axes")
    return v


def _pad_map(node: Node, idx: np.ndarray) -> np.ndarray:
    r = idx.ndim
    pads = [int(p) for p in node.attrs["pads"]]
    if len(pads) != 2 * r or min(pads) < 0:
        raise ShapeError(f"pads {pads} must be {2 * r} non-negative values (begins, then ends)")
    mode = str(node.attrs.get("mode", "constant"))
    width = [(pads[a], pads[a + r]) for a in range(r)]
    if mode == "constant":
        return np.pad(idx, width, constant_values=-1)
    if mode not in PAD_MODES:
        raise ShapeError(f"pad mode {mode!r} (one of {', '.join(PAD_MODES)})")
    if mode == "reflect" and any(max(w) >= n for w, n in zip(width, idx.shape, strict=True)):
        raise ShapeError(f"reflect pads {pads} must be smaller than the axes {idx.shape}")
    return np.pad(idx, width, mode=_NP_MODES[mode])  # ONNX's reflect/edge/wrap are NumPy's


def slice_indices(node: Node, shape: Shape) -> list[np.ndarray]:
    """The kept input indices of every axis."""
    r = len(shape)
    axes = [int(a) for a in node.attrs.get("axes", range(r))]
    if sorted(set(axes)) != sorted(axes) or not all(0 <= a < r for a in axes):
        raise ShapeError(f"slice axes {axes} are not distinct axes of a rank-{r} tensor")
    n = len(axes)
    starts, ends = _per_axis(node, "starts", n), _per_axis(node, "ends", n)
    steps = _per_axis(node, "steps", n) if "steps" in node.attrs else [1] * n
    lo, hi, step = [0] * r, list(shape), [1] * r
    for i, a in enumerate(axes):
        lo[a], hi[a], step[a] = starts[i], ends[i], steps[i]
    out = []
    for a in range(r):
        if step[a] == 0:
            raise ShapeError("slice step 0")
        keep = np.arange(lo[a], hi[a], step[a])
        if keep.size == 0 or keep.min() < 0 or keep.max() >= shape[a]:
            raise ShapeError(
                f"slice {lo[a]}:{hi[a]}:{step[a]} of axis {a} (size {shape[a]}) "
                "is empty or leaves the axis"
            )
        out.append(keep)
    return out


def _slice_map(node: Node, idx: np.ndarray) -> np.ndarray:
    return idx[np.ix_(*slice_indices(node, idx.shape))]


def _resize_map(node: Node, idx: np.ndarray) -> np.ndarray:
    scales = _per_axis(node, "scales", idx.ndim)
    if min(scales) < 1:
        raise ShapeError(f"resize scales {scales} must be integers >= 1 (upsampling)")
    for a, s in enumerate(scales):
        idx = np.repeat(idx, s, axis=a)
    return idx


def _block(node: Node, idx: np.ndarray) -> tuple[int, str]:
    if idx.ndim != 3:
        raise ShapeError(f"{node.op} needs a (channels, height, width) tensor, not {idx.shape}")
    b = int(node.attrs["blocksize"])
    mode = str(node.attrs.get("mode", "DCR"))
    if b < 1 or mode not in ("DCR", "CRD"):
        raise ShapeError(f"blocksize {b} / mode {mode!r} (blocksize >= 1, mode DCR or CRD)")
    return b, mode


def _d2s_map(node: Node, idx: np.ndarray) -> np.ndarray:
    b, mode = _block(node, idx)
    c, h, w = idx.shape
    if c % (b * b):
        raise ShapeError(f"{c} channels are not divisible by blocksize^2 = {b * b}")
    if mode == "DCR":
        t = idx.reshape(b, b, c // (b * b), h, w).transpose(2, 3, 0, 4, 1)
    else:
        t = idx.reshape(c // (b * b), b, b, h, w).transpose(0, 3, 1, 4, 2)
    return t.reshape(c // (b * b), h * b, w * b)


def _s2d_map(node: Node, idx: np.ndarray) -> np.ndarray:
    b, mode = _block(node, idx)
    c, h, w = idx.shape
    if h % b or w % b:
        raise ShapeError(f"height {h} and width {w} are not divisible by blocksize {b}")
    t = idx.reshape(c, h // b, b, w // b, b)
    t = t.transpose(2, 4, 0, 1, 3) if mode == "DCR" else t.transpose(0, 2, 4, 1, 3)
    return t.reshape(c * b * b, h // b, w // b)


def _take_map(node: Node, idx: np.ndarray) -> np.ndarray:
    axis = int(node.attrs["axis"])
    ind = np.asarray(node.attrs["indices"], dtype=np.int64)
    if not 0 <= axis < idx.ndim:
        raise ShapeError(f"take axis {axis} is not a non-batch axis of a rank-{idx.ndim} tensor")
    n = idx.shape[axis]
    if ind.size and (ind.min() < -n or ind.max() >= n):
        raise ShapeError(f"take indices {ind.tolist()} leave axis {axis} (size {n})")
    return np.take(idx, np.where(ind < 0, ind + n, ind), axis=axis)


_MAPS = {
    "take": _take_map,
    "pad": _pad_map,
    "slice": _slice_map,
    "resize": _resize_map,
    "depth_to_space": _d2s_map,
    "space_to_depth": _s2d_map,
}


def index_map(node: Node, shape: Shape) -> np.ndarray:
    """For each output element, the flat input index it copies (-1: a zero)."""
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return _MAPS[node.op](node, idx)


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    return [tuple(int(d) for d in index_map(node, ins[0]).shape)]


def gather(node: Node, x: np.ndarray, fill: float | int = 0) -> np.ndarray:
    """Apply the node's index map to a batch (floats or integers); padding gets ``fill``."""
    idx = index_map(node, x.shape[1:])
    flat = x.reshape(x.shape[0], -1)
    out = flat[:, np.maximum(idx, 0).reshape(-1)]
    pad = (idx < 0).reshape(-1)
    if pad.any():
        out[:, pad] = fill
    return out.reshape(x.shape[0], *idx.shape)


def pad_value(node: Node) -> float:
    return float(node.attrs.get("value", 0.0)) if node.op == "pad" else 0.0


def pad_fill(node: Node, t: FixedType) -> int:
    """The padding constant as an integer at type ``t``'s scale (nearest, ties up)."""
    v = Fraction(pad_value(node)) * Fraction(2) ** t.frac
    return math.floor(v + Fraction(1, 2))


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [gather(node, xs[0], pad_value(node))]


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    m = gather(node, x.m, pad_fill(node, x.t))
    t = prec.get("result", x.t)
    return [Fx(m if t == x.t else requantize(m, x.t.frac, t), t)]


def _keep_type(node: Node, ctx) -> Precision:
    return {}


def _pad_type(node: Node, ctx) -> Precision:
    """The input's type, widened in integer bits where the fill value lies outside it."""
    t = ctx.in_types[0]
    if not math.isfinite(pad_value(node)):
        raise ModelError(f"node {node.name!r}: pad value {pad_value(node)} is not a finite number")
    m = pad_fill(node, t)
    if t.min_int <= m <= t.max_int:
        return {"result": t}
    lo, hi = min(t.min_int, m), max(t.max_int, m)
    wide = type_for_int_range(lo, hi, t.frac, lo < 0, t.rounding, t.overflow)
    return {"result": wide}


# -- ONNX import


def _ints(v: Any) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1)]


def _axes(axes: list[int] | None, rank: int, n: int) -> list[int]:
    """ONNX axes (with batch = 0) made non-negative; default: the first n axes."""
    if axes is None:
        return list(range(n))
    return [a + rank if a < 0 else a for a in axes]


def _pad_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Pad", name)
    shape = st.shapes[x]
    rank = len(shape) + 1
    mode = decode_str(a.get("mode", "constant"))
    if mode not in PAD_MODES:
        raise unsupported("Pad", name, f"mode {mode!r} (constant, reflect, edge or wrap)")
    if st.opset < 11:
        raw, value = [int(p) for p in a.get("pads", [])], float(a.get("value", 0.0))
        axes = None
    else:
        pc = opt_const(st, onode, 1)
        if pc is None:
            raise unsupported("Pad", name, "no pads")
        raw = _ints(pc)
        vc = opt_const(st, onode, 2)
        value = 0.0 if vc is None or np.size(vc) == 0 else float(np.asarray(vc).reshape(-1)[0])
        ac = opt_const(st, onode, 3)
        axes = None if ac is None else _ints(ac)
    if not math.isfinite(value):
        raise unsupported("Pad", name, f"constant value {value} (only finite values)")
    n = len(raw) // 2
    begin, end = [0] * rank, [0] * rank
    for i, ax in enumerate(_axes(axes, rank, n)):
        begin[ax], end[ax] = raw[i], raw[i + n]
    if begin[0] or end[0]:
        raise unsupported("Pad", name, "padding of the batch axis")
    out = onode.output[0]
    if min(begin + end) < 0 and mode != "constant":
        raise unsupported("Pad", name, f"negative pads with mode {mode!r}")
    if min(begin + end) < 0:  # negative pads crop: a slice first
        ends = [d - max(-e, 0) for d, e in zip(shape, end[1:], strict=True)]
        crop = {"starts": [max(-b, 0) for b in begin[1:]], "ends": ends, "steps": [1] * len(shape)}
        if max(begin + end) <= 0:
            st.emit(Node(name, "slice", [x], [out], attrs=crop))
            return
        x_crop = f"{out}__crop"
        st.uses[x_crop] = 1
        st.emit(Node(f"{name}_crop", "slice", [x], [x_crop], attrs=crop))
        x = x_crop
    pads = [max(p, 0) for p in begin[1:] + end[1:]]
    attrs: dict[str, Any] = {"pads": pads}
    if mode != "constant":
        attrs["mode"] = mode
    elif value != 0.0:
        attrs["value"] = value
    st.emit(Node(name, "pad", [x], [out], attrs=attrs))


def _slice_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Slice", name)
    shape = st.shapes[x]
    rank = len(shape) + 1
    if st.opset < 10:
        starts, ends = _ints(a["starts"]), _ints(a["ends"])
        axes = _ints(a["axes"]) if "axes" in a else None
        steps = [1] * len(starts)
    else:
        parts = [opt_const(st, onode, i) for i in range(1, 5)]
        if parts[0] is None or parts[1] is None:
            raise unsupported("Slice", name, "no starts/ends")
        starts, ends = _ints(parts[0]), _ints(parts[1])
        axes = None if parts[2] is None else _ints(parts[2])
        steps = [1] * len(starts) if parts[3] is None else _ints(parts[3])
    full = [1, *shape]
    lo, hi, step = [0] * rank, list(full), [1] * rank
    for i, ax in enumerate(_axes(axes, rank, len(starts))):
        s, e, k = starts[i], ends[i], steps[i]
        if k == 0:
            raise ModelError(f"node {name!r} (Slice): step 0")
        d = full[ax]
        s, e = s + d if s < 0 else s, e + d if e < 0 else e  # ONNX clamping rules
        s, e = (min(max(s, 0), d), min(max(e, 0), d)) if k > 0 else (
            min(max(s, 0), d - 1), min(max(e, -1), d - 1))  # fmt: skip
        if ax == 0:
            if not (k == 1 and starts[i] == 0 and ends[i] >= BATCH_END):
                raise unsupported("Slice", name, "slicing of the batch axis")
            continue
        lo[ax], hi[ax], step[ax] = s, e, k
    attrs = {"starts": lo[1:], "ends": hi[1:], "steps": step[1:]}
    st.emit(Node(name, "slice", [x], [onode.output[0]], attrs=attrs))


def _split_import(onode, st: ImportState, a: dict, name: str) -> None:
    """Split of a computed tensor (a fused q/k/v projection): one slice per output."""
    x = dyn(st, onode.input[0], "Split", name)
    shape = st.shapes[x]
    rank = len(shape) + 1
    axis = int(a.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise unsupported("Split", name, "a split of the batch axis")
    d = shape[axis - 1]
    c = opt_const(st, onode, 1)
    sizes = _ints(c) if c is not None else _ints(a["split"]) if "split" in a else None
    outs = list(onode.output)
    if sizes is None:
        k = int(a.get("num_outputs", len(outs)))
        step = -(-d // k)
        sizes = [min(step, d - i * step) for i in range(k)]
    if sum(sizes) != d or len(sizes) != len(outs):
        raise unsupported("Split", name, f"sizes {sizes} of an axis of length {d}")
    start = 0
    for i, (out, size) in enumerate(zip(outs, sizes, strict=True)):
        lo, hi = [0] * len(shape), list(shape)
        lo[axis - 1], hi[axis - 1] = start, start + size
        start += size
        if out:
            attrs = {"starts": lo, "ends": hi, "steps": [1] * len(shape)}
            st.emit(Node(f"{name}_{i}", "slice", [x], [out], attrs=attrs))


BATCH_END = 2**31 - 1  # ends at or above this keep a whole axis (torch writes INT64_MAX)


def nearest_source(i: int, s: int, n_in: int, ctm: str, nearest: str) -> int | None:
    """ONNX Resize's nearest input index for output ``i`` at integer scale ``s`` (None: unsupported)."""
    n_out = n_in * s
    if ctm in ("half_pixel", "half_pixel_symmetric"):
        x = Fraction(2 * i + 1, 2 * s) - Fraction(1, 2)
    elif ctm == "pytorch_half_pixel":
        x = Fraction(2 * i + 1, 2 * s) - Fraction(1, 2) if n_out > 1 else Fraction(0)
    elif ctm == "asymmetric":
        x = Fraction(i, s)
    elif ctm == "align_corners":
        x = Fraction(i * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
    elif ctm == "tf_half_pixel_for_nn":
        x = Fraction(2 * i + 1, 2 * s)
    else:
        return None
    fl = math.floor(x)
    if nearest == "floor":
        r = fl
    elif nearest == "ceil":
        r = math.ceil(x)
    elif nearest in ("round_prefer_floor", "round_prefer_ceil"):
        frac = x - fl
        half_up = frac > Fraction(1, 2) or (frac == Fraction(1, 2) and nearest.endswith("ceil"))
        r = fl + 1 if half_up else fl
    else:
        return None
    return min(max(r, 0), n_in - 1)


def _resize_import(onode, st: ImportState, a: dict, name: str) -> None:
    op = onode.op_type
    x = dyn(st, onode.input[0], op, name)
    shape = st.shapes[x]
    full = [1, *shape]
    mode = decode_str(a.get("mode", "nearest"))
    if mode not in ("nearest", "linear"):
        raise unsupported(op, name, f"mode {mode!r} (nearest or linear upsampling)")
    if op == "Upsample" or st.opset < 11:
        sc = opt_const(st, onode, 1) if len(onode.input) > 1 else np.asarray(a.get("scales"))
        scales_f = [float(v) for v in np.asarray(sc).reshape(-1)]
        ctm, nearest = "asymmetric", "floor"  # Upsample / Resize-10 semantics
    else:
        sc = opt_const(st, onode, 2)
        sizes = opt_const(st, onode, 3)
        # opset 18: scales/sizes for the listed axes only, the others keep their size
        axes = _axes(_ints(a["axes"]), len(full), 0) if "axes" in a else list(range(len(full)))
        if sc is not None and np.size(sc):
            given = [float(v) for v in np.asarray(sc).reshape(-1)]
        elif sizes is not None:
            sz = _ints(sizes)
            batches = {BATCH} | {b for b in st.batch.values() if b is not None}
            if 0 in axes and sz[axes.index(0)] not in batches:
                raise unsupported(op, name, f"sizes {sz} that change the batch size")
            given = [1.0 if ax == 0 else o / full[ax] for o, ax in zip(sz, axes, strict=False)]
        else:
            raise unsupported(op, name, "neither constant scales nor sizes")
        if len(given) != len(axes):
            raise ShapeError(f"node {name!r} ({op}): {len(given)} scales for axes {axes}")
        scales_f = [1.0] * len(full)
        for ax, v in zip(axes, given, strict=True):
            scales_f[ax] = v
        ctm = decode_str(a.get("coordinate_transformation_mode", "half_pixel"))
        nearest = decode_str(a.get("nearest_mode", "round_prefer_floor"))
    if len(scales_f) != len(full):
        raise ShapeError(f"node {name!r} ({op}): {len(scales_f)} scales for rank {len(full)}")
    if scales_f[0] != 1.0:
        raise unsupported(op, name, "resizing of the batch axis")
    scales = [round(s) for s in scales_f[1:]]
    if any(s < 1 or s != f for s, f in zip(scales, scales_f[1:], strict=True)):
        raise unsupported(op, name, f"scales {scales_f[1:]} (only integer upsampling factors)")
    if mode == "linear":
        from lightspeed.ops.resample import CTMS, linear_node

        if ctm not in CTMS:
            raise unsupported(
                op, name,
                f"linear mode with coordinate_transformation_mode {ctm!r} (supported: "
                f"{', '.join(CTMS)}, as torch and Keras export bilinear upsampling)",
            )  # fmt: skip
        st.emit(linear_node(name, x, onode.output[0], scales, ctm))
        return
    for n_in, s in zip(shape, scales, strict=True):
        want = [i // s for i in range(n_in * s)]
        got = [nearest_source(i, s, n_in, ctm, nearest) for i in range(n_in * s)]
        if got != want:
            raise unsupported(
                op, name,
                f"coordinate_transformation_mode {ctm!r} with nearest_mode {nearest!r} does not "
                "repeat each input element (use asymmetric/floor or half_pixel/round_prefer_floor)",
            )  # fmt: skip
    st.emit(Node(name, "resize", [x], [onode.output[0]], attrs={"scales": scales}))


def _block_import(onode, st: ImportState, a: dict, name: str) -> None:
    op = onode.op_type
    x = dyn(st, onode.input[0], op, name)
    if len(st.shapes[x]) != 3:
        raise unsupported(op, name, f"input {st.shapes[x]} (only (N, C, H, W))")
    attrs = {"blocksize": int(a["blocksize"]), "mode": decode_str(a.get("mode", "DCR"))}
    ir_op = "depth_to_space" if op == "DepthToSpace" else "space_to_depth"
    st.emit(Node(name, ir_op, [x], [onode.output[0]], attrs=attrs))


def _take_import(onode, st: ImportState, a: dict, name: str) -> None:
    x = dyn(st, onode.input[0], "Gather", name)
    if not st.is_const(onode.input[1]):
        raise unsupported("Gather", name, "computed indices (only constant indices)")
    axis = int(a.get("axis", 0))
    rank = len(st.shapes[x]) + 1
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise unsupported("Gather", name, "indices on the batch axis")
    ind = np.asarray(st.const(onode.input[1])).astype(np.int64)
    attrs = {"axis": axis - 1, "indices": ind.tolist()}
    st.emit(Node(name, "take", [x], [onode.output[0]], attrs=attrs))


# -- QONNX export


def _take_export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes):
    ind = b.const(f"{key}_indices", np.array(node.attrs["indices"]), dtype=np.int64)
    b.node("Gather", [ins[0], ind], [out], key, axis=int(node.attrs["axis"]) + 1)


def _pad_export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes):
    p = [int(v) for v in node.attrs["pads"]]
    r = len(p) // 2
    pads = b.const(f"{key}_pads", np.array([0, *p[:r], 0, *p[r:]]), dtype=np.int64)
    mode = str(node.attrs.get("mode", "constant"))
    if mode == "wrap":
        raise ModelError(
            f"node {node.name!r}: pad mode 'wrap' needs ONNX opset 19; the QONNX export is "
            "opset 13 (constant, reflect and edge export)"
        )
    if pad_value(node) != 0.0:
        fill = b.const(f"{key}_value", np.array(pad_value(node)), dtype=np.float32)
        b.node("Pad", [ins[0], pads, fill], [out], key, mode=mode)
        return
    b.node("Pad", [ins[0], pads], [out], key, mode=mode)


def _slice_export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes):
    in_shape = shapes[node.inputs[0]]
    keep = slice_indices(node, in_shape)
    starts = [int(k[0]) for k in keep]
    steps = [int(k[1] - k[0]) if len(k) > 1 else 1 for k in keep]
    # one past the last kept index; below -size means "before index 0" for a negative step
    ends = [int(k[-1]) + st if int(k[-1]) + st >= 0 else -d - 1
            for k, st, d in zip(keep, steps, in_shape, strict=True)]  # fmt: skip
    args = [
        b.const(f"{key}_{n}", np.array(v), dtype=np.int64)
        for n, v in (
            ("starts", starts),
            ("ends", ends),
            ("axes", list(range(1, len(in_shape) + 1))),
            ("steps", steps),
        )
    ]
    b.node("Slice", [ins[0], *args], [out], key)


def _resize_export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes):
    scales = b.const(f"{key}_scales", np.array([1.0, *node.attrs["scales"]]), dtype=np.float32)
    b.node(
        "Resize", [ins[0], "", scales], [out], key,
        mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor",
    )  # fmt: skip


def _block_export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes):
    mode = str(node.attrs.get("mode", "DCR"))
    if node.op == "space_to_depth":
        if mode != "DCR":
            raise ModelError(
                f"node {node.name!r}: space_to_depth mode {mode} has no ONNX op "
                "(ONNX SpaceToDepth is DCR); QONNX export supports mode DCR only"
            )
        b.node("SpaceToDepth", ins, [out], key, blocksize=int(node.attrs["blocksize"]))
        return
    b.node("DepthToSpace", ins, [out], key, blocksize=int(node.attrs["blocksize"]), mode=mode)


def _op(name: str, doc: str, onnx_import: dict, onnx_export, typing=_keep_type) -> Op:
    return Op(
        name=name,
        roles=("result",) if typing is _pad_type else (),
        infer_shape=_shape,
        run_float=_float,
        run_fixed=_fixed,
        auto_precision=typing,
        trained_precision=typing,
        wiring=True,
        onnx_import=onnx_import,
        onnx_export=onnx_export,
        doc=doc,
    )


PAD = _op(
    "pad",
    "constant (attr value, default 0), reflect, edge or wrap padding (attr pads: begins, then "
    "ends, per non-batch axis); ONNX Pad, torch F.pad, Keras ZeroPadding",
    {"Pad": _pad_import},
    _pad_export,
    typing=_pad_type,
)
SLICE = _op(
    "slice",
    "keeps range(start, end, step) of every non-batch axis; ONNX Slice, Keras Cropping",
    {"Slice": _slice_import, "Split": _split_import},
    _slice_export,
)
RESIZE = _op(
    "resize",
    "nearest-neighbour upsampling by integer scales per non-batch axis; ONNX Resize, UpSampling",
    {"Resize": _resize_import, "Upsample": _resize_import},
    _resize_export,
)
TAKE = _op(
    "take",
    "np.take on one non-batch axis with constant indices (a scalar drops the axis); ONNX Gather",
    {"Gather": _take_import},
    _take_export,
)
DEPTH_TO_SPACE = _op(
    "depth_to_space",
    "ONNX DepthToSpace (blocksize, mode DCR or CRD) on (C, H, W)",
    {"DepthToSpace": _block_import},
    _block_export,
)
SPACE_TO_DEPTH = _op(
    "space_to_depth",
    "inverse of depth_to_space (blocksize, mode DCR = ONNX SpaceToDepth, or CRD) on (C, H, W)",
    {"SpaceToDepth": _block_import},
    _block_export,
)

__all__ = [
    "DEPTH_TO_SPACE",
    "PAD",
    "RESIZE",
    "SLICE",
    "SPACE_TO_DEPTH",
    "TAKE",
    "gather",
    "index_map",
    "nearest_source",
    "pad_fill",
    "slice_indices",
]
