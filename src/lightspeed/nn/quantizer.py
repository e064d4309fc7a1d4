"""Fixed-point fake quantization for PyTorch with exactly :mod:`lightspeed.fixed` semantics.

``fake_quant(x, t)`` returns the float value of ``ap_fixed`` ``t`` that
``lightspeed.fixed.quantize_float`` produces for ``x`` (same quantization and
overflow modes), so a quantized PyTorch model and the emulator agree bit for
bit. Scaling by ``2**frac`` is exact in floating point, so the rounding
decisions are taken on exactly the same numbers as in NumPy.

Gradients are straight-through: identity inside the representable range; for
saturating types the gradient is zero where the value was clipped (the
"clipped STE" of QKeras/Brevitas), for WRAP it is identity everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lightspeed.errors import ConfigError
from lightspeed.fixed import QUANT_MODES, FixedType, parse_type, round_increment

TypeLike = str | FixedType


def _round_int(y: torch.Tensor, mode: str) -> torch.Tensor:
    """Integer (as float) nearest to y under a Xilinx quantization mode; y is already scaled."""
    if mode not in QUANT_MODES:
        raise ConfigError(
            f"unknown quantization mode {mode!r}; use one of {', '.join(QUANT_MODES)}"
        )
    fl = torch.floor(y)
    if mode == "TRN":
        return fl
    # y - fl is inexact for y in (-0.5, 0): compare y with fl + 1/2 instead (as lightspeed.fixed)
    half = fl + 0.5
    qb = y >= half
    r = (y != fl) & (y != half)
    odd = torch.remainder(fl, 2) != 0
    return fl + round_increment(qb, r, y < 0, odd, mode).to(y.dtype)


def _overflow_int(q: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, mode: str, signed: bool):
    if mode == "WRAP":
        span = hi - lo + 1
        return torch.remainder(q - lo, span) + lo
    if mode == "SAT":
        return torch.minimum(torch.maximum(q, lo), hi)
    if mode == "SAT_ZERO":
        return torch.where((q < lo) | (q > hi), torch.zeros_like(q), q)
    low = -hi if signed else lo  # SAT_SYM
    return torch.minimum(torch.maximum(q, low), hi)


def fake_quant(
    x: torch.Tensor,
    frac: torch.Tensor,
    width: torch.Tensor,
    signed: bool,
    rounding: str,
    overflow: str,
) -> torch.Tensor:
    """Quantize-dequantize ``x`` to ``ap_fixed<width, width-frac>`` (tensors broadcast against x).

    Forward: exactly ``to_float(quantize_float(x, t), t)``. Backward: straight-through.
    """
    scale = torch.exp2(frac.to(x.dtype))
    lo = -torch.exp2(width.to(x.dtype) - 1) if signed else torch.zeros_like(scale)
    hi = (torch.exp2(width.to(x.dtype) - 1) if signed else torch.exp2(width.to(x.dtype))) - 1
    with torch.no_grad():
        q = _overflow_int(_round_int(x * scale, rounding), lo, hi, overflow, signed) / scale
        if not x.requires_grad:
            return q
        # x + (q - x).detach() would not return q exactly in floating point: use a Function
        inside = None if overflow == "WRAP" else (x >= lo / scale) & (x <= hi / scale)
    return _StraightThrough.apply(x, q, inside)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantized value, exactly. Backward: identity (masked where clipped)."""

    @staticmethod
    def forward(ctx, x, q, inside):
        ctx.save_for_backward(inside if inside is not None else torch.ones(0, dtype=torch.bool))
        ctx.masked = inside is not None
        return q.clone()

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        g = grad * inside.to(grad.dtype) if ctx.masked else grad
        return g, None, None


class Quantizer(nn.Module):
    """A fixed-point fake quantizer: per tensor, or per channel along axis 0.

    ``Quantizer("ap_fixed<8,3,RND,SAT>")``, ``Quantizer(width=8, integer=3)``,
    ``Quantizer(width=[6, 8, 4], integer=[1, 2, 1])`` (per output channel), or
    Brevitas-style ``Quantizer(width=8, scale=2**-5)`` (``scale`` must be a
    power of two: a fixed-point type has a power-of-two step; anything else is
    refused because it could not be exported exactly).
    """

    width: torch.Tensor  # buffers: per-channel widths and integer bits (float64)
    integer: torch.Tensor

    def __init__(
        self,
        type: TypeLike | None = None,
        *,
        width: int | Sequence[int] | None = None,
        integer: int | Sequence[int] | None = None,
        scale: float | None = None,
        signed: bool = True,
        rounding: str = "RND",
        overflow: str = "SAT",
    ) -> None:
        super().__init__()
        if type is not None:
            t = parse_type(type)
            width, integer, signed, rounding, overflow = (
                t.width,
                t.integer,
                t.signed,
                t.rounding,
                t.overflow,
            )
        if width is None:
            raise ConfigError(
                "a Quantizer needs a type string or width=, e.g. Quantizer('ap_fixed<8,3>')"
            )
        if scale is not None:
            if integer is not None:
                raise ConfigError("give either integer= or scale=, not both")
            integer = _integer_from_scale(width, scale).tolist()
        if integer is None:
            raise ConfigError(
                "a Quantizer needs integer= (integer bits incl. sign) or a power-of-two scale="
            )
        w, i = np.broadcast_arrays(
            np.atleast_1d(np.asarray(width, dtype=np.int64)),
            np.atleast_1d(np.asarray(integer, dtype=np.int64)),
        )
        per_channel = np.ndim(width) > 0 or np.ndim(integer) > 0
        for wc, ic in zip(w.flat, i.flat, strict=True):
            FixedType(int(wc), int(ic), signed, rounding, overflow)  # validates every channel
        self.signed = bool(signed)
        self.rounding = rounding
        self.overflow = overflow
        self.per_channel = bool(per_channel)
        self.register_buffer("width", torch.as_tensor(w.copy(), dtype=torch.float64))
        self.register_buffer("integer", torch.as_tensor(i.copy(), dtype=torch.float64))

    # -- types ------------------------------------------------------------
    def channel_types(self) -> list[FixedType]:
        """One FixedType per channel (a single one for a per-tensor quantizer)."""
        return [
            FixedType(int(w), int(i), self.signed, self.rounding, self.overflow)
            for w, i in zip(self.width.tolist(), self.integer.tolist(), strict=True)
        ]

    @property
    def fixed_type(self) -> FixedType:
        """The type of the quantized tensor; per channel: the narrowest type holding every channel
        exactly (max integer bits + max fractional bits)."""
        ts = self.channel_types()
        if len(ts) == 1:
            return ts[0]
        integer = max(t.integer for t in ts)
        frac = max(t.frac for t in ts)
        return FixedType(integer + frac, integer, self.signed, self.rounding, self.overflow)

    def set_type(self, width: int | Sequence[int], integer: int | Sequence[int]) -> None:
        """Change bit widths in place (used by the precision search)."""
        w = np.broadcast_to(np.asarray(width, dtype=np.int64), self.width.shape).copy()
        i = np.broadcast_to(np.asarray(integer, dtype=np.int64), self.integer.shape).copy()
        for wc, ic in zip(w.flat, i.flat, strict=True):
            FixedType(int(wc), int(ic), self.signed, self.rounding, self.overflow)
        self.width.copy_(torch.as_tensor(w, dtype=torch.float64))
        self.integer.copy_(torch.as_tensor(i, dtype=torch.float64))

    def bits(self) -> float:
        """Mean width over channels (cost models)."""
        return float(self.width.mean())

    # -- forward ----------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, i = self.width, self.integer
        if self.per_channel and w.numel() > 1:
            shape = (-1, *([1] * (x.dim() - 1)))
            if x.shape[0] != w.numel():
                raise ConfigError(
                    f"per-channel quantizer has {w.numel()} channels but the tensor has {x.shape[0]} "
                    "along axis 0; give one width per output channel"
                )
            w, i = w.reshape(shape), i.reshape(shape)
        return fake_quant(
            x, (w - i).to(x.dtype), w.to(x.dtype), self.signed, self.rounding, self.overflow
        )

    def extra_repr(self) -> str:
        if self.per_channel:
            return f"per-channel {len(self.width)}, covering {self.fixed_type}"
        return str(self.fixed_type)


def _integer_from_scale(width: int | Sequence[int], scale: float | Sequence[float]) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ConfigError(f"quantizer scale {scale!r} must be positive and finite")
    e = np.log2(s)
    if np.any(e != np.round(e)):
        bad = s.flat[int(np.argmax(e != np.round(e)))]
        raise ConfigError(
            f"quantizer scale {bad:g} is not a power of two, so it has no exact fixed-point "
            "equivalent; use a power-of-two scale (2**-k) or give width= and integer="
        )
    return np.asarray(width, dtype=np.int64) + e.astype(np.int64)


def as_quantizer(q: Quantizer | TypeLike | None, what: str) -> Quantizer | None:
    """Accept a Quantizer, a type string/FixedType or None."""
    if q is None or isinstance(q, Quantizer):
        return q
    if isinstance(q, (str, FixedType)):
        return Quantizer(q)
    raise ConfigError(
        f"{what}: expected a type string like 'ap_fixed<8,3>' or a Quantizer, got {q!r}"
    )
