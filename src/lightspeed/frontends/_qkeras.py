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

Data-dependent scales (``alpha="auto"``/``"auto_po2"``) are recomputed by
QKeras from the float weights on every call; they are refused.
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
    names = _SIGNATURES.get(kind, ())
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


def _alpha_one(q: Quantizer) -> None:
    alpha = q.cfg.get("alpha")
    if isinstance(alpha, str):
        raise q.refuse(
            f"with alpha={alpha!r}",
            "its per-channel scale is recomputed from the float weights at every call and has "
            "no fixed-point type; retrain with alpha=1",
        )
    if alpha is not None and float(alpha) != 1.0:
        raise q.refuse(f"with alpha={alpha}", "retrain with alpha=1")


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
    if q.kind in ("quantized_bits", "quantized_relu"):
        t = bits_type(q)
        k = np.round(w32.astype(np.float64) * 2.0**t.frac)  # exact: a power-of-two scale
        k = np.clip(k, t.min_int, t.max_int)
        return k * 2.0**-t.frac, t
    if q.kind == "binary":
        _alpha_one(q)
        if q.get("use_01", False):
            return (w32 >= 0).astype(np.float64), FixedType(1, 1, False, "RND_CONV", "SAT")
        return np.where(w32 >= 0, 1.0, -1.0), FixedType(2, 2, True, "RND_CONV", "SAT")
    if q.kind == "ternary":
        _alpha_one(q)
        thr = q.cfg.get("threshold")
        if isinstance(thr, str):
            raise q.refuse(f"with threshold={thr!r}", "retrain with a numeric threshold")
        thr32 = np.float32(0.33 if thr is None else thr)
        v = (np.abs(w32) >= thr32) * np.sign(w32)
        return v.astype(np.float64), FixedType(2, 2, True, "RND_CONV", "SAT")
    return _po2(q, w32)


def _po2(q: Quantizer, w32: np.ndarray) -> tuple[np.ndarray, FixedType]:
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
