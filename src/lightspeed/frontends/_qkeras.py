"""QKeras quantizers, read from a layer config and applied the way QKeras' inference applies them.

A quantizer arrives as a config dict (``{"class_name": "quantized_bits",
"config": {...}}``) or as QKeras' string form (``"quantized_relu(6,2)"``).
:func:`parse` turns either into a :class:`Quantizer`; nothing here imports
QKeras or TensorFlow. The semantics follow QKeras 0.9's ``__call__``:

* ``quantized_bits(bits, integer, symmetric, keep_negative, alpha=1|None)``:
  ``clip(round_half_even(x * 2**F), lo, hi) * 2**-F`` with ``F = bits -
  keep_negative - integer``, ``lo = -2**(bits-1) + symmetric`` (0 when
  unsigned), ``hi = 2**(bits-keep_negative) - 1``: a cast to
  ``ap_fixed<bits, integer+keep_negative, RND_CONV, SAT>`` (``SAT_SYM`` when
  symmetric, ``ap_ufixed`` when not keep_negative).
* ``quantized_relu(bits, integer)``: ``ap_ufixed<bits, integer, RND_CONV, SAT>``.
* ``binary`` (weights): ``sign(x)`` with 0 -> +1 (``use_01``: 0/1), times alpha.
* ``ternary`` (weights): ``(|x| >= threshold) * sign(x)`` (threshold 0.33 by
  default), times alpha.
* ``quantized_po2(bits, max_value)`` (weights): ``sign(x) * 2**round(log2|x|)``
  with the exponent clipped to what ``bits`` can hold.

``alpha="auto_po2"`` (what QKeras layers switch ``binary()``, ``ternary()``
and ``quantized_bits`` without alpha to) scales each output channel by a
power of two that QKeras recomputes from the float weights on every call;
the same float32 computation is repeated here, so the values match and one
exact type covers every channel. ``alpha="auto"`` (a float scale) has no
fixed-point form and is refused.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.fixed import FixedType

# positional parameter order of each quantizer's constructor (QKeras 0.9)
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "quantized_bits": (
        "bits", "integer", "symmetric", "keep_negative", "alpha", "use_stochastic_rounding",
    ),
    "quantized_relu": (
        "bits", "integer", "use_sigmoid", "negative_slope", "use_stochastic_rounding",
        "relu_upper_bound",
    ),
    "binary": ("use_01", "alpha", "use_stochastic_rounding"),
    "ternary": ("alpha", "threshold", "use_stochastic_rounding"),
    "quantized_po2": (
        "bits", "max_value", "use_stochastic_rounding", "quadratic_approximation", "log2_rounding",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Quantizer:
    kind: str  # a key of _SIGNATURES
    cfg: dict[str, Any]
    where: str  # "layer 'q_dense' kernel_quantizer", for messages

    def refuse(self, why: str, fix: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"QKeras {self.where}: {self.kind} {why}; {fix}")

    def get(self, key: str, default: Any) -> Any:
        v = self.cfg.get(key, default)
        return default if v is None and default is not None else v


def parse(spec: Any, where: str) -> Quantizer | None:
    """A quantizer from its config dict or string form; None for no quantizer."""
    if spec is None or spec == "" or spec == "linear":
        return None
    if isinstance(spec, dict):
        kind = str(spec.get("class_name", ""))
        cfg = dict(spec.get("config", {}))
    elif isinstance(spec, str):
        kind, cfg = _parse_call(spec, where)
    else:
        raise UnsupportedOpError(f"QKeras {where}: cannot read quantizer {spec!r}")
    if kind not in _SIGNATURES:
        raise UnsupportedOpError(
            f"QKeras {where}: quantizer {kind!r} is not supported; use quantized_bits, "
            "quantized_relu, binary, ternary or quantized_po2"
        )
    q = Quantizer(kind, cfg, where)
    if q.get("use_stochastic_rounding", False):
        raise q.refuse(
            "with use_stochastic_rounding", "inference rounds deterministically; retrain without it"
        )
    return q


def is_quantizer_string(spec: Any) -> bool:
    return isinstance(spec, str) and spec.split("(")[0].strip() in _SIGNATURES


def _parse_call(text: str, where: str) -> tuple[str, dict[str, Any]]:
    """``"quantized_bits(6, 0, alpha=1)"`` -> ("quantized_bits", {...}) with literal arguments only."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise UnsupportedOpError(f"QKeras {where}: cannot parse quantizer {text!r}") from None
    if isinstance(tree, ast.Name):
        return tree.id, {}
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        raise UnsupportedOpError(f"QKeras {where}: cannot parse quantizer {text!r}")
    kind = tree.func.id
    if kind not in _SIGNATURES:
        return kind, {}  # refused by the caller, by name
    names = _SIGNATURES[kind]
    cfg: dict[str, Any] = {}
    try:
        for i, arg in enumerate(tree.args):
            if i >= len(names):
                raise ValueError
            cfg[names[i]] = ast.literal_eval(arg)
        for kw in tree.keywords:
            cfg[str(kw.arg)] = ast.literal_eval(kw.value)
    except ValueError:
        raise UnsupportedOpError(
            f"QKeras {where}: quantizer {text!r} has arguments that are not plain literals"
        ) from None
    return kind, cfg


# ---------------------------------------------------------------------------
# types and weights


def _alpha_one(q: Quantizer) -> bool:
    """True for ``alpha="auto_po2"``; refuses every alpha other than that, 1 and None."""
    alpha = q.cfg.get("alpha")
    if alpha == "auto_po2":
        return True
    if isinstance(alpha, str):
        raise q.refuse(
            f"with alpha={alpha!r}",
            "its float per-channel scale has no fixed-point type; retrain with alpha=1 or "
            "alpha='auto_po2'",
        )
    if alpha is not None and float(alpha) != 1.0:
        raise q.refuse(f"with alpha={alpha}", "retrain with alpha=1 or alpha='auto_po2'")
    return False


_EPS = np.float32(1e-7)  # keras.backend.epsilon()
_LOG2 = np.float32(np.log(2.0))


def _channel_axes(x: np.ndarray) -> tuple[int, ...] | None:
    """QKeras' per-channel reduction: every axis but the last (channels_last)."""
    return tuple(range(x.ndim - 1)) if x.ndim > 1 else None


def _po2(v: np.ndarray) -> np.ndarray:
    return np.float32(2.0) ** np.round(np.log(v + _EPS) / _LOG2).astype(np.float32)


def _ls_scale_po2(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """QKeras' ``_get_scale("auto_po2", x, q)``: least-squares scale per channel, to a power of two."""
    axes = _channel_axes(x)
    if axes is None:
        qx, qq = x * q, q * q
    else:
        qx = np.mean(x * q, axis=axes, keepdims=True, dtype=np.float32)
        qq = np.mean(q * q, axis=axes, keepdims=True, dtype=np.float32)
    return _po2(qx / (qq + _EPS))


def exact_type(v: np.ndarray) -> FixedType:
    """The smallest signed type holding every value of ``v`` (dyadic rationals) exactly."""
    from lightspeed.fixed import type_for_int_range

    v = np.asarray(v, dtype=np.float64)
    frac = 0
    while frac < 60 and not np.array_equal(v * 2.0**frac, np.round(v * 2.0**frac)):
        frac += 1
    m = np.round(v * 2.0**frac)
    lo, hi = (int(m.min()), int(m.max())) if m.size else (0, 0)
    return type_for_int_range(min(lo, -1), max(hi, 0), frac, True, "RND_CONV", "SAT")


def bits_type(q: Quantizer) -> FixedType:
    """The ap_fixed type a quantized_bits / quantized_relu casts to."""
    bits, integer = int(q.get("bits", 8)), int(q.get("integer", 0))
    if q.kind == "quantized_relu":
        if float(q.get("negative_slope", 0.0)) != 0.0 or q.get("use_sigmoid", 0):
            raise q.refuse(
                "with negative_slope or use_sigmoid",
                "use quantized_relu(bits, integer) or quantized_bits",
            )
        if q.cfg.get("relu_upper_bound") is not None:
            raise q.refuse("with relu_upper_bound", "use quantized_relu(bits, integer)")
        return FixedType(bits, integer, False, "RND_CONV", "SAT")
    if q.kind != "quantized_bits":
        raise q.refuse("has no fixed-point cast form", "use quantized_bits or quantized_relu here")
    _alpha_one(q)
    keep = 1 if q.get("keep_negative", True) else 0
    if bits - keep <= 0:
        raise q.refuse(f"with bits={bits}", "use binary for 1-bit values")
    symmetric = bool(q.get("symmetric", 0)) and keep
    return FixedType(
        bits, integer + keep, bool(keep), "RND_CONV", "SAT_SYM" if symmetric else "SAT"
    )


def activation_type(q: Quantizer) -> FixedType:
    """The cast type of a quantizer on activations (QActivation, a QKeras layer's activation)."""
    if q.kind in ("binary", "ternary", "quantized_po2"):
        raise q.refuse(
            "on activations is a sign/threshold function, not a fixed-point cast",
            "use quantized_bits or quantized_relu for activations",
        )
    return bits_type(q)


def quantize_weights(q: Quantizer, w: np.ndarray) -> tuple[np.ndarray, FixedType]:
    """The values QKeras' inference uses for float weights ``w`` and a type holding them exactly."""
    w32 = np.asarray(w, dtype=np.float32)
    if q.kind == "quantized_bits" and q.cfg.get("alpha") == "auto_po2":
        v = _bits_auto_po2(q, w32)
        return v, exact_type(v)
    if q.kind in ("quantized_bits", "quantized_relu"):
        t = bits_type(q)
        k = np.round(w32.astype(np.float64) * 2.0**t.frac)  # exact: a power-of-two scale
        lo = -t.max_int if t.overflow == "SAT_SYM" else t.min_int
        k = np.clip(k, lo, t.max_int)
        return k * 2.0**-t.frac, t
    if q.kind == "binary":
        auto = _alpha_one(q)
        k = np.where(w32 >= 0, np.float32(1), np.float32(-1))  # sign, 0 -> +1
        if q.get("use_01", False):
            k = (k + 1) / 2
        if not auto:
            if q.get("use_01", False):
                return k.astype(np.float64), FixedType(1, 1, False, "RND_CONV", "SAT")
            return k.astype(np.float64), FixedType(2, 2, True, "RND_CONV", "SAT")
        v = (_ls_scale_po2(w32, k) * k).astype(np.float64)
        return v, exact_type(v)
    if q.kind == "ternary":
        auto = _alpha_one(q)
        thr = q.cfg.get("threshold")
        if isinstance(thr, str) or (auto and thr is not None):
            raise q.refuse(f"with threshold={thr!r}", "retrain with a numeric threshold")
        if not auto:
            thr32 = np.float32(0.33 if thr is None else thr)
            v = (np.abs(w32) >= thr32) * np.sign(w32)
            return v.astype(np.float64), FixedType(2, 2, True, "RND_CONV", "SAT")
        v = _ternary_auto_po2(q, w32).astype(np.float64)
        return v, exact_type(v)
    return _po2_weights(q, w32)


def _bits_auto_po2(q: Quantizer, x: np.ndarray) -> np.ndarray:
    """quantized_bits(alpha="auto_po2") as QKeras 0.9 computes it (symmetric, per channel)."""
    bits, integer = int(q.get("bits", 8)), int(q.get("integer", 0))
    if not q.get("symmetric", 0) and q.cfg.get("symmetric") is not None and bits > 1:
        raise q.refuse(
            "with alpha='auto_po2' and symmetric=0", "QKeras itself requires symmetric=1"
        )
    m_i = np.float32(2.0**integer)
    xs = x / m_i
    levels = np.float32((2 ** (bits - 1) - 1) * 2)
    axes = _channel_axes(x) if x.ndim > 1 else (0,)
    scale = _po2(np.max(np.abs(xs), axis=axes, keepdims=True) * np.float32(2) / levels)
    z = xs
    for _ in range(5):
        v = np.floor(np.abs(xs) / scale + np.float32(0.5))
        z = np.sign(xs) * np.where(v < levels / 2, v, levels / 2)
        scale = _ls_scale_po2(xs, z)
    return (scale * m_i * z).astype(np.float64)


def _ternary_auto_po2(q: Quantizer, x: np.ndarray) -> np.ndarray:
    """ternary(alpha="auto_po2") as QKeras 0.9 computes it (5 refinement steps)."""
    axes = _channel_axes(x)
    m = np.max(np.abs(x), axis=axes, keepdims=True)
    scale = _po2(np.float32(2) * m / np.float32(3))
    k = np.zeros_like(x)
    for _ in range(int(q.get("number_of_unrolls", 5))):
        thres = scale / np.float32(2)
        v = scale * np.round(x / scale)
        k = (np.abs(v) >= thres).astype(np.float32) * np.sign(x)
        scale = _ls_scale_po2(x, k)
    return scale * k


def _po2_weights(q: Quantizer, w32: np.ndarray) -> tuple[np.ndarray, FixedType]:
    bits = int(q.get("bits", 8))
    max_value = q.cfg.get("max_value")
    if q.get("quadratic_approximation", False) or q.get("log2_rounding", "rnd") != "rnd":
        raise q.refuse(
            "with quadratic_approximation or floor rounding", "use quantized_po2(bits[, max_value])"
        )
    sign_bit = 1 if max_value is None or float(max_value) > 1 else 0
    eff = bits - 1 - sign_bit
    lo_e, hi_e = -(2**eff), 2**eff - 1
    a = np.abs(w32)
    eps = np.float32(1e-7)  # keras' epsilon: |x| below it gets the smallest exponent
    clipped = np.where(a < eps, eps, a)
    if max_value is not None:
        clipped = np.where(clipped >= np.float32(max_value), np.float32(max_value), clipped)
    with np.errstate(divide="ignore"):
        log2 = np.log(clipped) / np.float32(np.log(2.0))  # float32, as QKeras computes it
    e = np.where(a < eps, lo_e, np.clip(np.round(log2), lo_e, hi_e)).astype(np.float64)
    v = np.where(w32 >= 0, 1.0, -1.0) * 2.0**e
    frac = int(max(0, -e.min())) if e.size else 0
    top = int(max(0, e.max())) if e.size else 0
    return v, FixedType(top + frac + 2, top + 2, True, "RND_CONV", "SAT")
