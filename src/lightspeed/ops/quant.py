"""Quant: an explicit cast to a fixed-point type (QONNX ``Quant`` on activations).

The cast type is the node's ``types["result"]``; float semantics
fake-quantize to it, so the float and fixed models agree exactly on these
tensors. This module also imports QONNX ``Quant``/``BipolarQuant``:

A QONNX ``Quant(x, scale, zero_point, bitwidth; signed, narrow, rounding_mode)``
computes ``y = (clip(round(x / scale + zp), lo, hi) - zp) * scale``. With a
power-of-two scale ``2**-k`` and ``zp = 0`` this is exactly a cast to
``ap_fixed<b, b-k, Q, O>`` (``ap_ufixed`` when unsigned) where Q comes from
``rounding_mode`` (ROUND -> RND_CONV, ROUND_TO_ZERO -> TRN_ZERO, FLOOR -> TRN)
and O is SAT (SAT_SYM when ``narrow`` and signed). A float scale or a non-zero
integer zero point becomes integer codes plus explicit scale steps
(:func:`_scaled_quant`, merged by :mod:`lightspeed.frontends._scales`).

* On constants (weights, biases) the Quant is folded into the values and the
  type is remembered; the consuming dense/conv records it as its trained
  ``node.types["weight"|"bias"]``. Per-channel power-of-two scales
  (and per-element bit widths as HGQ exports them; 0 bits = pruned) get one
  type wide enough to hold every element exactly.
* On activations it becomes an IR ``quant`` node (``node.types["result"]``).
* ``BipolarQuant`` (``y = scale * (x >= 0 ? 1 : -1)``) is supported on
  constants (binary weights, type ``ap_fixed<2, 2-k>``); on activations it is a
  sign function, not a cast: a one-threshold ``multithreshold`` and a scale step
  (:mod:`lightspeed.ops.threshold`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.errors import ModelError, UnsupportedOpError
from lightspeed.fixed import MAX_WIDTH, FixedType, quantize_float, requantize, to_float
from lightspeed.ir.graph import Node
from lightspeed.ops.base import (
    AutoContext,
    Fx,
    Op,
    Precision,
    QParams,
    TrainedContext,
    merge,
    same_shape,
)
from lightspeed.ops.onnx_export import Builder
from lightspeed.ops.onnx_import import ImportState, dyn, full_const, onnx_attrs, unsupported


def cast_type(node: Node) -> FixedType:
    if "result" not in node.types:
        raise ModelError(
            f"quant node {node.name!r} has no cast type; give it as Node(..., types={{'result': T}})"
        )
    return node.types["result"]


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    t = cast_type(node)
    return [to_float(quantize_float(xs[0], t, what=f"{node.name} input"), t)]


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x = xs[0]
    return [Fx(requantize(x.m, x.t.frac, prec["result"]), prec["result"])]


def _auto(node: Node, ctx: AutoContext) -> Precision:
    return merge(ctx.fixed, {"result": cast_type(node)})


def _trained(node: Node, ctx: TrainedContext) -> Precision:
    return {"result": ctx.fixed.get("result", cast_type(node))}


def _export(b: Builder, node: Node, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
    b.quant(ins[0], out, prec["result"], key)


# ---------------------------------------------------------------------------
# QONNX import

ROUNDING = {"ROUND": "RND_CONV", "ROUND_TO_ZERO": "TRN_ZERO", "FLOOR": "TRN"}


def _check_scale(s: np.ndarray, name: str) -> None:
    if s.size == 0 or np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ModelError(f"node {name!r}: Quant scale must be positive and finite")


def _pow2_exponents(scale: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    _check_scale(s, name)
    e = np.log2(s)
    if np.any(e != np.round(e)):
        bad = float(s.reshape(-1)[np.argmax(e != np.round(e))])
        raise UnsupportedOpError(
            f"node {name!r}: Quant scale {bad:g} is not a power of two, so it has no exact "
            "fixed-point type; train with power-of-two scales (e.g. Brevitas *FixedPoint quantizers)"
        )
    return -np.round(e).astype(np.int64)  # fractional bits per element


def _const(st: ImportState, onode: Any, i: int, what: str, name: str) -> np.ndarray:
    if len(onode.input) <= i or not onode.input[i]:
        raise ModelError(f"node {name!r} ({onode.op_type}): missing {what} input")
    if not st.is_const(onode.input[i]):
        raise UnsupportedOpError(
            f"node {name!r} ({onode.op_type}): {what} must be a constant (dynamic quantization "
            "parameters are not supported)"
        )
    return np.asarray(st.const(onode.input[i]))


def _bits(bitwidth: np.ndarray, name: str) -> np.ndarray:
    """Bit widths as integers (one per element where heterogeneous, as HGQ exports them)."""
    b = np.asarray(bitwidth, dtype=np.float64)
    if b.size == 0 or np.any(b != np.round(b)) or np.any(b < 0) or np.any(b > MAX_WIDTH):
        raise UnsupportedOpError(
            f"node {name!r}: Quant bitwidth must be integers in 0..{MAX_WIDTH}, got "
            f"{np.unique(b)[:4].tolist()}"
        )
    return b.astype(np.int64)


def quant_params(onode: Any, st: ImportState, name: str) -> dict[str, Any]:
    """Read and check a Quant node's parameters."""
    a = onnx_attrs(onode)
    scale = _const(st, onode, 1, "scale", name)
    zp = _const(st, onode, 2, "zero_point", name)
    bits = _bits(_const(st, onode, 3, "bitwidth", name), name)
    zp = np.asarray(zp, dtype=np.float64)
    if np.any(zp != np.round(zp)) or np.any(~np.isfinite(zp)):
        raise UnsupportedOpError(
            f"node {name!r}: Quant zero_point {zp.reshape(-1)[:4].tolist()} is not an integer"
        )
    mode = a.get("rounding_mode", "ROUND")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    s64 = np.asarray(scale, dtype=np.float64)
    _check_scale(s64, name)
    pow2 = bool(np.all(np.log2(s64) == np.round(np.log2(s64))) and np.all(zp == 0))
    return {
        "raw_scale": np.asarray(scale),
        "zp": zp,
        "pow2": pow2,  # a plain fixed-point cast; else codes plus an explicit scale step
        "scale": s64,
        "frac": _pow2_exponents(scale, name) if pow2 else None,
        "bits": bits,
        "signed": bool(a.get("signed", 1)),
        "narrow": bool(a.get("narrow", 0)),
        "rounding": mode.upper(),
    }


def int_bounds(bits: np.ndarray, signed: bool, narrow: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integer range of each element (0..0 where the bit width is 0: a pruned weight)."""
    b = np.asarray(bits, dtype=np.int64)
    if signed:
        half = np.ldexp(1.0, b - 1)
        lo, hi = -half + float(narrow), half - 1.0
    else:
        lo, hi = np.zeros(b.shape), np.ldexp(1.0, b) - 1.0 - float(narrow)
    zero = b == 0
    return np.where(zero, 0.0, lo), np.where(zero, 0.0, hi)


def _round(v: np.ndarray, mode: str, name: str) -> np.ndarray:
    if mode == "ROUND":
        return np.round(v)
    if mode == "ROUND_TO_ZERO":
        return np.trunc(v)
    if mode == "FLOOR":
        return np.floor(v)
    if mode == "CEIL":
        return np.ceil(v)
    raise ModelError(f"node {name!r}: unknown Quant rounding_mode {mode!r}")


def fake_quant(x: np.ndarray, p: dict[str, Any], name: str) -> np.ndarray:
    """QONNX Quant on float values (zero point 0), element-wise scales and bit widths."""
    lo, hi = int_bounds(p["bits"], p["signed"], p["narrow"])
    q = np.clip(_round(np.asarray(x, dtype=np.float64) / p["scale"], p["rounding"], name), lo, hi)
    return q * p["scale"]


def _check_width(width: int, name: str) -> None:
    if width > MAX_WIDTH:
        raise UnsupportedOpError(
            f"node {name!r}: per-channel scales/bit widths need a {width}-bit type to hold every "
            f"element exactly (max {MAX_WIDTH}); use per-tensor or closer per-channel scales"
        )


def const_type(p: dict[str, Any], name: str) -> FixedType:
    """One type holding the quantized constant exactly (every channel's or element's grid)."""
    b, k = np.broadcast_arrays(p["bits"], p["frac"])
    live = b > 0
    if not np.any(live):  # everything pruned to zero
        return FixedType(1, 1, p["signed"], "RND_CONV", "SAT")
    frac = int(k[live].max())
    integer = int((b[live] - k[live]).max())
    width = max(integer + frac, 1)
    _check_width(width, name)
    overflow = "SAT_SYM" if p["narrow"] and p["signed"] else "SAT"
    rounding = ROUNDING.get(p["rounding"], "RND")
    return FixedType(width, integer, p["signed"], rounding, overflow)


def _check_modes(p: dict, name: str) -> None:
    """Quant rounding and narrow-range settings that have an ap_fixed equivalent."""
    if p["rounding"] not in ROUNDING:
        raise UnsupportedOpError(
            f"node {name!r}: Quant rounding_mode {p['rounding']} has no ap_fixed equivalent; "
            "use ROUND, ROUND_TO_ZERO or FLOOR"
        )
    if p["narrow"] and not p["signed"]:
        raise UnsupportedOpError(
            f"node {name!r}: unsigned narrow-range Quant (max 2^b-2) has no ap_ufixed overflow "
            "mode; use narrow=0 for unsigned activations"
        )


def activation_type(p: dict[str, Any], name: str) -> FixedType:
    """The exact cast a Quant on activations performs (refusing what fixed point cannot do)."""
    if np.unique(p["frac"]).size != 1 or np.unique(p["bits"]).size != 1:
        raise UnsupportedOpError(
            f"node {name!r}: per-channel/per-element Quant scales or bit widths on activations "
            "are not supported; use one power-of-two scale and one bit width per activation tensor"
        )
    if int(p["bits"].reshape(-1)[0]) < 1:
        raise UnsupportedOpError(f"node {name!r}: a 0-bit Quant on activations zeroes the tensor")
    _check_modes(p, name)
    k = int(p["frac"].reshape(-1)[0])
    bits = int(p["bits"].reshape(-1)[0])
    overflow = "SAT_SYM" if p["narrow"] else "SAT"
    return FixedType(bits, bits - k, p["signed"], ROUNDING[p["rounding"]], overflow)


def bipolar_type(frac: np.ndarray, name: str) -> FixedType:
    kmax, kmin = int(frac.max()), int(frac.min())
    width = 2 + kmax - kmin
    _check_width(width, name)
    return FixedType(width, 2 - kmin, True, "RND_CONV", "SAT")


def convert_quant(onode: Any, st: ImportState, a: dict, name: str) -> None:
    op = onode.op_type
    if op not in ("Quant", "BipolarQuant"):
        raise unsupported(
            f"{onode.domain}.{op}", name, "QONNX op other than Quant/BipolarQuant/Trunc"
        )
    out = onode.output[0]
    x_const = st.is_const(onode.input[0])
    if op == "BipolarQuant":
        scale = _const(st, onode, 1, "scale", name)
        frac = _pow2_exponents(scale, name)
        if not x_const:
            from lightspeed.ops.threshold import convert_bipolar_activation

            convert_bipolar_activation(st, onode, scale, name)
            return
        x = np.asarray(st.const(onode.input[0]), dtype=np.float64)
        st.consts[out] = np.where(x >= 0, 1.0, -1.0) * np.asarray(scale, dtype=np.float64)
        st.qtypes[out] = bipolar_type(frac, name)
        return
    p = quant_params(onode, st, name)
    if not p["pow2"]:
        _scaled_quant(onode, st, p, name)
        return
    if x_const:
        st.consts[out] = fake_quant(st.const(onode.input[0]), p, name)
        st.qtypes[out] = const_type(p, name)
        return
    t = activation_type(p, name)
    src = dyn(st, onode.input[0], op, name)
    st.emit(Node(name, "quant", [src], [out], types={"result": t}))


def int_type(lo: float, hi: float) -> FixedType:
    """The narrowest integer type holding ``lo..hi``."""
    signed = lo < 0
    mag = max(-lo, hi + 1) if signed else hi + 1
    width = max(int(np.ceil(np.log2(max(mag, 1.0)))) + int(signed), 1)
    return FixedType(width, width, signed, "RND_CONV", "SAT")


def qonnx_codes(x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """The integers ``clip(round(x / scale + zp))`` exactly as qonnx computes them (x's dtype)."""
    x = np.asarray(x)
    dt = np.result_type(x.dtype, p["raw_scale"].dtype, np.float32)
    y = x.astype(dt) / p["raw_scale"].astype(dt) + p["zp"].astype(dt)
    lo, hi = int_bounds(p["bits"], p["signed"], p["narrow"])
    return _round(np.clip(y, lo, hi), p["rounding"], "Quant").astype(np.float64)


def _scaled_quant(onode: Any, st: ImportState, p: dict[str, Any], name: str) -> None:
    """A Quant whose scale is not a power of two (or whose zero point is not 0).

    The value is ``(q - zp) * scale`` with ``q`` an integer code. On a constant
    the consumer gets the codes ``q - zp`` as its integers (``st.wcodes``) and
    the importer applies ``scale`` after its accumulator. On activations it is
    ``x * (1/scale) + zp`` -> cast to the code type -> ``q * scale - zp * scale``:
    two scale steps (``affine`` nodes marked ``qscale``) around an integer cast,
    which :mod:`lightspeed.frontends._scales` moves next to the neighbouring
    integer computations and merges.
    """
    out = onode.output[0]
    if p["signed"] and np.any(p["bits"] == 1):
        raise UnsupportedOpError(
            f"node {name!r}: a 1-bit signed Quant is a sign function (qonnx executes it as "
            "BipolarQuant); use BipolarQuant or at least 2 bits"
        )
    if st.is_const(onode.input[0]):
        x = st.const(onode.input[0])
        q = qonnx_codes(x, p) - p["zp"]
        raw = p["raw_scale"].astype(np.result_type(np.asarray(x).dtype, np.float32))
        st.consts[out] = np.asarray(q.astype(raw.dtype) * raw, dtype=np.float64)
        lo, hi = int_bounds(p["bits"], p["signed"], p["narrow"])
        code_t = int_type(float(np.min(lo - p["zp"])), float(np.max(hi - p["zp"])))
        full = np.broadcast_to(p["scale"], q.shape).copy()
        st.wcodes[out] = (q, full, code_t)
        return
    if np.unique(p["bits"]).size != 1:
        raise UnsupportedOpError(
            f"node {name!r}: per-element Quant bit widths on activations are not supported; "
            "use one bit width per activation tensor"
        )
    _check_modes(p, name)
    src = dyn(st, onode.input[0], "Quant", name)
    shape = st.shapes[src]
    bits = int(p["bits"].reshape(-1)[0])
    code_t = FixedType(
        bits, bits, p["signed"], ROUNDING[p["rounding"]], "SAT_SYM" if p["narrow"] else "SAT"
    )
    s = full_const(p["scale"], shape, "Quant", name)
    z = full_const(p["zp"], shape, "Quant", name)
    scaled, codes = f"{out}__scaled", f"{out}__codes"
    attrs = {"onnx_op": "Quant", "origin": name, "qscale": True}
    st.emit(Node(f"{name}_scale", "affine", [src], [scaled], attrs=dict(attrs),
                 params={"scale": 1.0 / s, "shift": z}))  # fmt: skip
    st.emit(Node(name, "quant", [scaled], [codes], types={"result": code_t}))
    st.emit(Node(f"{name}_dequant", "affine", [codes], [out], attrs=dict(attrs),
                 params={"scale": s, "shift": -z * s}))  # fmt: skip


def convert_trunc(onode: Any, st: ImportState, a: dict, name: str) -> None:
    """QONNX ``Trunc``: drop low bits of an integer code (Brevitas' truncating average pool).

    v1 (5 inputs): ``(rnd(round(x/s + z) / 2^(in - out)) - z) * s``; v2 (6 inputs, with an
    output scale ``so``): ``t = 2^round(log2(so/s))``,
    ``(clip(rnd(round(x/s + z) / t)) - z/t) * so``. Both are casts and scale steps.
    """
    n_in = len([t for t in onode.input if t])
    if n_in not in (5, 6):
        raise ModelError(f"node {name!r} (Trunc) has {n_in} inputs; QONNX Trunc has 5 or 6")
    s = _const(st, onode, 1, "scale", name).astype(np.float64)
    z = _const(st, onode, 2, "zero_point", name).astype(np.float64)
    in_bits = int(_bits(_const(st, onode, 3, "input_bit_width", name), name).max())
    mode = a.get("rounding_mode", "FLOOR")
    mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
    if mode not in ROUNDING:
        raise UnsupportedOpError(
            f"node {name!r}: Trunc rounding_mode {mode} has no ap_fixed equivalent; use FLOOR, "
            "ROUND or ROUND_TO_ZERO"
        )
    _check_scale(s, name)
    if np.any(z != np.round(z)):
        raise UnsupportedOpError(f"node {name!r}: Trunc zero_point must be an integer")
    if n_in == 5:
        out_bits = int(_bits(_const(st, onode, 4, "output_bit_width", name), name).max())
        shift, out_s, out_z = in_bits - out_bits, s, z
        out_t = int_type(-(2.0 ** (in_bits + 1)), 2.0 ** (in_bits + 1))  # v1 does not clip
    else:
        out_s = _const(st, onode, 4, "output_scale", name).astype(np.float64)
        _check_scale(out_s, name)
        out_bits = int(_bits(_const(st, onode, 5, "output_bit_width", name), name).max())
        ratio = np.round(np.log2(out_s / s))
        if np.unique(ratio).size != 1:
            raise UnsupportedOpError(f"node {name!r}: Trunc with a per-channel shift")
        shift = int(ratio.reshape(-1)[0])
        out_z = z / 2.0**shift
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        if narrow and not signed:
            raise UnsupportedOpError(f"node {name!r}: unsigned narrow-range Trunc is not supported")
        out_t = FixedType(out_bits, out_bits, signed, "RND_CONV", "SAT_SYM" if narrow else "SAT")
    out_t = FixedType(out_t.width, out_t.integer, out_t.signed, ROUNDING[mode], out_t.overflow)
    x = dyn(st, onode.input[0], "Trunc", name)
    shape = st.shapes[x]
    out = onode.output[0]
    attrs = {"onnx_op": "Trunc", "origin": name, "qscale": True}
    code_t = int_type(-(2.0 ** (in_bits + 1)), 2.0 ** (in_bits + 1))  # round only, as qonnx
    steps: list[tuple[str, Any, Any]] = [
        ("scale", 1.0 / full_const(s, shape, "Trunc", name), full_const(z, shape, "Trunc", name)),
        ("codes", code_t, None),
        ("shift", np.full(shape, 2.0**-shift), np.zeros(shape)),
        ("", out_t, None),
        ("dequant", full_const(out_s, shape, "Trunc", name),
         -full_const(out_z, shape, "Trunc", name) * full_const(out_s, shape, "Trunc", name)),
    ]  # fmt: skip
    src = x
    for i, (tag, v, b) in enumerate(steps):
        dst = out if i == len(steps) - 1 else f"{out}__trunc{i}"
        node_name = f"{name}_{tag}" if tag else name
        if isinstance(v, FixedType):
            st.emit(Node(node_name, "quant", [src], [dst], types={"result": v}))
        else:
            st.emit(Node(node_name, "affine", [src], [dst], attrs=dict(attrs),
                         params={"scale": v, "shift": b}))  # fmt: skip
        src = dst


QUANT = Op(
    fusable=True,
    name="quant",
    roles=("result",),
    infer_shape=same_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    trained_precision=_trained,
    onnx_import={"Quant": convert_quant, "BipolarQuant": convert_quant, "Trunc": convert_trunc},
    onnx_export=_export,
    doc="cast to types['result'] (from QONNX Quant); fake-quantizes in the float model",
)


# ---------------------------------------------------------------------------
# fixed_quant: a cast where every element has its own fixed-point type
#
# HGQ2 trains one (keep_negative k, integer bits i, fractional bits f) per element
# of a tensor. Element e is cast to ap_fixed<k+i+f, k+i, Q, O> (ap_ufixed when
# k = 0) with the tensor's one rounding mode Q and overflow mode O; an element with
# k+i+f <= 0 bits is pruned (always 0), and so is a 1-bit signed SAT_SYM element
# (its symmetric range holds only 0 in HGQ2, where ap_fixed would give -1). The tensor then carries one covering type
# (the node's types["result"]): every element's grid and range fit in it exactly.
# Params ``k``, ``i``, ``f`` (integers as floats, shaped like one sample) hold the
# element types; attrs ``rounding`` and ``overflow`` the modes.


def element_kif(node: Node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-element (k, i, f) integers of a fixed_quant node."""
    p = node.params
    if not all(n in p for n in ("k", "i", "f")):
        raise ModelError(f"fixed_quant node {node.name!r} needs params 'k', 'i' and 'f'")
    k, i, f = (np.asarray(p[n], dtype=np.float64) for n in ("k", "i", "f"))
    k, i, f = np.broadcast_arrays(k, i, f)
    if np.any(k != np.round(k)) or np.any(i != np.round(i)) or np.any(f != np.round(f)):
        raise ModelError(f"fixed_quant node {node.name!r}: k, i, f must be integers")
    if np.any((k != 0) & (k != 1)):
        raise ModelError(f"fixed_quant node {node.name!r}: k (keep negative) must be 0 or 1")
    return k.astype(np.int64), i.astype(np.int64), f.astype(np.int64)


def element_type(k: int, i: int, f: int, rounding: str, overflow: str) -> FixedType | None:
    """ap_fixed<k+i+f, k+i, Q, O> of one element; None when it has no bits (pruned)."""
    if k + i + f <= 0 or (k + i + f == 1 and k and overflow == "SAT_SYM"):
        return None  # no bits, or one signed bit whose symmetric range is {0} (HGQ2)
    return FixedType(int(k + i + f), int(k + i), bool(k), rounding, overflow)


def cover_type(
    k: np.ndarray, i: np.ndarray, f: np.ndarray, rounding: str, overflow: str, name: str
) -> FixedType:
    """The smallest type holding every live element's values exactly."""
    live = k + i + f > 0
    if not np.any(live):  # everything pruned: a tensor of zeros
        return FixedType(1, 1, False, rounding, overflow)
    signed = bool(np.any(k[live]))
    frac = int(f[live].max())
    integer = int(i[live].max()) + int(signed)
    width = max(integer + frac, 1)
    _check_width(width, name)
    return FixedType(width, integer, signed, rounding, overflow)


def source_type(nodes: list[Node]) -> FixedType:
    """An input type from which the per-element casts of ``nodes`` (the readers of one
    model input) give the same bits as casts of the real values.

    Truncating to one extra fractional bit keeps round-half-up (RND) and
    truncation exact; the range covers every element's, and the overflow mode is
    the casts' own (wrapping twice, or saturating twice, equals once).
    """
    covers, modes = [], set()
    for node in nodes:
        k, i, f = element_kif(node)
        rnd, ovf = node.attrs.get("rounding", "RND"), node.attrs.get("overflow", "WRAP")
        if rnd not in ("RND", "TRN"):
            raise UnsupportedOpError(
                f"node {node.name!r}: a per-element quantizer with rounding {rnd} on a model "
                "input has no exact input type; give the input type explicitly "
                "(input_types=...) or train the input quantizer with RND or TRN"
            )
        covers.append((cover_type(k, i, f, rnd, ovf, node.name), rnd == "RND"))
        modes.add("WRAP" if ovf == "WRAP" else "SAT")
    if len(modes) > 1:
        raise UnsupportedOpError(
            f"nodes {', '.join(repr(n.name) for n in nodes)} read one input with wrapping and "
            "saturating quantizers; no single input type serves both: give it explicitly "
            "(input_types=...)"
        )
    signed = any(c.signed for c, _ in covers)
    frac = max(c.frac + int(extra) for c, extra in covers)
    integer = max(c.integer + int(signed and not c.signed) for c, _ in covers)
    _check_width(integer + frac, nodes[0].name)
    return FixedType(max(integer + frac, 1), integer, signed, "TRN", modes.pop())


def element_groups(node: Node) -> list[tuple[FixedType | None, np.ndarray]]:
    """(element type, flat indices of the elements with that type), pruned elements as None."""
    k, i, f = element_kif(node)
    rnd, ovf = node.attrs.get("rounding", "RND"), node.attrs.get("overflow", "WRAP")
    kif = np.stack([k.reshape(-1), i.reshape(-1), f.reshape(-1)], axis=1)
    uniq, inverse = np.unique(kif, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups: dict[FixedType | None, list[np.ndarray]] = {}
    for n, (ku, iu, fu) in enumerate(uniq.tolist()):
        groups.setdefault(element_type(ku, iu, fu, rnd, ovf), []).append(
            np.flatnonzero(inverse == n)
        )
    return [(t, np.sort(np.concatenate(idx))) for t, idx in groups.items()]


def _fq_float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = np.asarray(xs[0], dtype=np.float64)
    flat = x.reshape(x.shape[0], -1)
    out = np.zeros_like(flat)
    for t, idx in element_groups(node):
        if t is not None:
            out[:, idx] = to_float(quantize_float(flat[:, idx], t, what=f"{node.name} input"), t)
    return [out.reshape(x.shape)]


def _fq_fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    x, res = xs[0], prec["result"]
    flat = x.m.reshape(x.m.shape[0], -1)
    out = np.zeros(flat.shape, dtype=object if res.width > 62 else np.int64)
    for t, idx in element_groups(node):
        if t is not None:  # cast to the element's type, then (exactly) to the tensor's
            out[:, idx] = requantize(requantize(flat[:, idx], x.t.frac, t), t.frac, res)
    return [Fx(out.reshape(x.m.shape), res)]


def fq_cover(node: Node) -> FixedType:
    k, i, f = element_kif(node)
    rnd, ovf = node.attrs.get("rounding", "RND"), node.attrs.get("overflow", "WRAP")
    return node.types.get("result") or cover_type(k, i, f, rnd, ovf, node.name)


def _fq_auto(node: Node, ctx: AutoContext) -> Precision:
    return merge(ctx.fixed, {"result": fq_cover(node)})


def _fq_trained(node: Node, ctx: TrainedContext) -> Precision:
    return {"result": ctx.fixed.get("result", fq_cover(node))}


def _fq_qparams(node: Node, prec: Precision) -> QParams:
    k, i, f = element_kif(node)
    return {"k": k, "i": i, "f": f}  # integers: part of the model's hash and artifact


def _fq_shape(node: Node, ins: list[Any]) -> list[Any]:
    k = element_kif(node)[0]
    if k.shape != tuple(ins[0]):
        raise ModelError(
            f"fixed_quant node {node.name!r}: element types of shape {k.shape} for an input of "
            f"shape {tuple(ins[0])}; give one type per element (broadcast them first)"
        )
    return [ins[0]]


FIXED_QUANT = Op(
    fusable=True,
    name="fixed_quant",
    roles=("result",),
    infer_shape=_fq_shape,
    run_float=_fq_float,
    run_fixed=_fq_fixed,
    auto_precision=_fq_auto,
    trained_precision=_fq_trained,
    quantize_params=_fq_qparams,
    doc="per-element cast: element e to ap_fixed<k+i+f, k+i> (HGQ2 quantizers; params k, i, f; "
    "attrs rounding, overflow); result is a type covering them all",
)
