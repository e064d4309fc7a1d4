"""Fixed-point types with the semantics of Xilinx ``ap_fixed<W,I,Q,O>``.

A value of type ``ap_fixed<W,I>`` is carried as an integer ``m`` with
``value = m * 2**-F`` where ``F = W - I`` is the number of fractional bits.
Everything here works on NumPy integer arrays: ``int64`` while every value
provably fits in 62 bits, Python-int ``object`` arrays beyond (exact, slower).

Conversions (``requantize``/``quantize_float``) apply the target's quantization
mode when fractional bits are dropped and its overflow mode when the value does
not fit, exactly like the Xilinx headers (tested against them with g++).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lightspeed.errors import FixedTypeError, InputError

QUANT_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
MAX_WIDTH = 64  # widest type accepted; wider intermediates are carried exactly anyway
_SAFE_BITS = 62  # int64 carrier is used while |values| < 2**62


@dataclass(frozen=True)
class FixedType:
    """``ap_fixed<width, integer, rounding, overflow>`` (``signed=False``: ``ap_ufixed``)."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self) -> None:
        if not 1 <= self.width <= MAX_WIDTH:
            raise FixedTypeError(
                f"width {self.width} is outside 1..{MAX_WIDTH}; lightspeed supports types up to "
                f"{MAX_WIDTH} bits (split wider values or reduce precision)"
            )
        if self.rounding not in QUANT_MODES:
            raise FixedTypeError(
                f"unknown quantization mode {self.rounding!r}; use one of {', '.join(QUANT_MODES)}"
            )
        if self.overflow not in OVERFLOW_MODES:
            raise FixedTypeError(
                f"unknown overflow mode {self.overflow!r}; use one of {', '.join(OVERFLOW_MODES)}"
            )

    @property
    def frac(self) -> int:
        """Number of fractional bits (negative when I > W)."""
        return self.width - self.integer

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min_value(self) -> float:
        return float(np.ldexp(float(self.min_int), -self.frac))

    @property
    def max_value(self) -> float:
        return float(np.ldexp(float(self.max_int), -self.frac))

    @property
    def lsb(self) -> float:
        return float(np.ldexp(1.0, -self.frac))

    def with_modes(self, rounding: str | None = None, overflow: str | None = None) -> FixedType:
        return FixedType(
            self.width,
            self.integer,
            self.signed,
            rounding or self.rounding,
            overflow or self.overflow,
        )

    def __str__(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        modes = ""
        if self.rounding != "TRN" or self.overflow != "WRAP":
            modes = f",{self.rounding}" + (f",{self.overflow}" if self.overflow != "WRAP" else "")
        if not modes and self.integer == self.width:
            return f"ap_int<{self.width}>" if self.signed else f"ap_uint<{self.width}>"
        return f"{base}<{self.width},{self.integer}{modes}>"

    def describe(self) -> str:
        return f"{self} [{self.min_value:g}, {self.max_value:g}] step {self.lsb:g}"


_TYPE_RE = re.compile(
    r"^\s*(?:ap_)?(?P<kind>u?fixed|u?int)\s*<\s*(?P<args>[^<>]*)>\s*$", re.IGNORECASE
)


def parse_type(text: str | FixedType) -> FixedType:
    """Parse ``ap_fixed<16,6>``, ``ap_ufixed<8,0,RND,SAT>``, ``ap_int<8>``, ``fixed<...>`` etc."""
    if isinstance(text, FixedType):
        return text
    if not isinstance(text, str):
        raise FixedTypeError(f"expected a type string like 'ap_fixed<16,6>', got {text!r}")
    m = _TYPE_RE.match(text)
    if not m:
        raise FixedTypeError(
            f"cannot parse type {text!r}; expected e.g. 'ap_fixed<16,6>', "
            "'ap_ufixed<8,0,RND,SAT>', 'ap_int<8>'"
        )
    kind = m.group("kind").lower()
    args = [a.strip() for a in m.group("args").split(",")] if m.group("args").strip() else []
    signed = not kind.startswith("u")
    try:
        if kind.endswith("int"):
            if len(args) != 1:
                raise FixedTypeError(
                    f"{text!r}: ap_int/ap_uint take exactly one width, e.g. ap_int<8>"
                )
            width = int(args[0])
            return FixedType(width, width, signed)
        if len(args) < 2 or len(args) > 5:
            raise FixedTypeError(
                f"{text!r}: ap_fixed takes <W,I[,Q[,O[,N]]]>, e.g. ap_fixed<16,6,RND,SAT>"
            )
        width, integer = int(args[0]), int(args[1])
    except ValueError as exc:
        raise FixedTypeError(f"{text!r}: width and integer bits must be integers") from exc
    modes = [a.upper().removeprefix("AP_") for a in args[2:]]
    rounding = modes[0] if len(modes) > 0 else "TRN"
    overflow = modes[1] if len(modes) > 1 else "WRAP"
    if len(modes) > 2 and modes[2] != "0":
        raise FixedTypeError(
            f"{text!r}: saturation bits N other than 0 are not supported; drop the fifth argument"
        )
    return FixedType(width, integer, signed, rounding, overflow)


# ---------------------------------------------------------------------------
# integer carriers


def _bitlen(m: np.ndarray) -> int:
    """Bits needed for the largest magnitude in m (0 for an empty or all-zero array)."""
    if m.size == 0:
        return 0
    if m.dtype == object:
        return max(int(v).bit_length() for v in m.flat)
    hi = int(np.max(m))
    lo = int(np.min(m))
    return max(hi.bit_length(), (-lo).bit_length())


def as_exact(m: np.ndarray, extra_bits: int = 0) -> np.ndarray:
    """Return m in a carrier that can hold ``m * 2**extra_bits`` exactly.

    ``int64`` carriers hold values below 2**62 in magnitude (every function here keeps
    that invariant), so they need no scan unless bits are added.
    """
    m = np.asarray(m)
    if m.dtype == object:
        return m
    if m.dtype.kind not in "iu":
        raise TypeError(f"integer array expected, got {m.dtype}")
    if m.dtype == np.int64 and extra_bits <= 0:
        return m
    if m.dtype.itemsize <= 4 and max(extra_bits, 0) + 32 <= _SAFE_BITS:
        return m.astype(np.int64)
    if _bitlen(m) + max(extra_bits, 0) <= _SAFE_BITS:
        return m.astype(np.int64, copy=False)
    return m.astype(object)


def shrink(m: np.ndarray) -> np.ndarray:
    """Move an object array back to int64 when its values fit (speeds up later work)."""
    if m.dtype == object and _bitlen(m) <= _SAFE_BITS:
        return m.astype(np.int64)
    return m


def round_increment(qb, r, neg, odd, mode: str):
    """The 0/1 Xilinx adds to the truncated (floor) value for quantization ``mode``.

    Boolean arrays (NumPy or torch): ``qb`` the first dropped bit, ``r`` any
    dropped bit below it (sticky), ``neg`` the source is negative, ``odd`` the
    truncated value's last bit. Shared by the integer, float and QAT paths.
    """
    if mode == "RND":
        return qb
    if mode == "RND_ZERO":
        return qb & (neg | r)
    if mode == "RND_MIN_INF":
        return qb & r
    if mode == "RND_INF":
        return qb & (~neg | r)
    if mode == "RND_CONV":
        return qb & (r | odd)
    if mode == "TRN_ZERO":
        return neg & (qb | r)
    return qb & False  # TRN


def _round_increment(fl, rem, s: int, neg, mode: str):
    """Increment for floor(m / 2**s), where ``rem = m - fl * 2**s`` is in [0, 2**s)."""
    half = 1 << (s - 1)
    qb = rem >= half
    r = (rem & (half - 1)) != 0 if s > 1 else np.zeros_like(qb)
    return np.asarray(round_increment(qb, r, neg, (fl & 1) == 1, mode), dtype=bool)


def _quantize_shift(m: np.ndarray, s: int, mode: str) -> np.ndarray:
    """floor-divide m by 2**s (s >= 1) applying the quantization mode."""
    if m.dtype != object and s > _SAFE_BITS:
        m = m.astype(object)
    if mode == "RND" and m.dtype != object:
        return (
            m + (1 << (s - 1))
        ) >> s  # round half up == floor(m/2**s + 1/2); no overflow below 2**62
    fl = m >> s
    if mode == "TRN":
        return fl
    rem = m - (fl << s)
    inc = _round_increment(fl, rem, s, m < 0, mode)
    return fl + inc.astype(np.int64 if m.dtype != object else object)


def overflow(m: np.ndarray, t: FixedType) -> np.ndarray:
    """Apply t's overflow mode to integers already at t's scale.

    Returns ``m`` itself (no copy) when every value is already in range.
    """
    lo, hi = t.min_int, t.max_int
    if t.overflow == "SAT_SYM" and t.signed and t.width > 1:
        # symmetric range for signed types (the headers map -2**(W-1) to -max too);
        # a 1-bit signed type has max 0, and the headers then saturate negatives to -1
        lo = -hi
    m = np.asarray(m)
    if m.dtype != object:
        m = as_exact(m)
    if m.dtype != object:
        if m.size == 0 or (lo <= int(m.min()) and int(m.max()) <= hi):
            return m
        if t.width <= _SAFE_BITS:
            if t.overflow == "WRAP":
                mask = (1 << t.width) - 1
                if not t.signed:
                    return m & mask
                out = m - lo
                out &= mask
                out += lo
                return out
            if t.overflow == "SAT_ZERO":
                return np.where((m < lo) | (m > hi), 0, m)
            return np.clip(m, lo, hi)  # SAT, SAT_SYM (lo already symmetric)
        m = m.astype(object)
    if t.overflow == "WRAP":
        mod = 1 << t.width
        out = (m - t.min_int) % mod + t.min_int if t.signed else m % mod
    elif t.overflow == "SAT_ZERO":
        bad = (m < lo) | (m > hi)
        out = np.where(bad, 0, m)
    else:  # SAT, SAT_SYM
        out = np.minimum(np.maximum(m, lo), hi)
    out = np.asarray(out)
    return shrink(out) if out.dtype == object else out.astype(np.int64, copy=False)


def requantize(m: np.ndarray, frac_in: int, t: FixedType) -> np.ndarray:
    """Convert integers with ``frac_in`` fractional bits to type t (quantize, then overflow)."""
    m = np.asarray(m)
    shift = frac_in - t.frac
    if shift > 0:
        q = _quantize_shift(as_exact(m), shift, t.rounding)
    elif shift < 0:
        q = as_exact(m, -shift) << (-shift)
    else:
        q = as_exact(m)
    return overflow(q, t)


def kernel_args(t: FixedType) -> tuple[int, int, int, int, int, int]:
    """(mode, ovf, lo, hi, wrap_lo, mask) for the kernel, mirroring fixed.overflow."""
    lo, hi = t.min_int, t.max_int
    if t.overflow == "SAT_SYM" and t.signed and t.width > 1:
        lo = -hi
    if t.overflow == "WRAP":
        ovf = 0 if t.width > _SAFE_BITS else (1 if t.signed else 2)
    else:
        ovf = 4 if t.overflow == "SAT_ZERO" else 3
    # kernel values stay below 2**62 + 1, so clipping the range to int64 changes nothing
    hi = min(hi, (1 << 63) - 1)
    mask = (1 << t.width) - 1 if ovf in (1, 2) else 0
    return QUANT_MODES.index(t.rounding), ovf, lo, hi, t.min_int if ovf == 1 else 0, mask


def quantize_float(x: np.ndarray, t: FixedType, what: str = "input") -> np.ndarray:
    """Exactly quantize float values to t's integer representation (like ``ap_fixed(double)``).

    float32 input is used as is (every float32 is a double); anything else goes through
    float64. Large arrays take a fused numba kernel when available (same bits).
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = np.asarray(x, dtype=np.float64)
    from lightspeed import _fixed_jit

    m = _fixed_jit.quantize(x, t.frac, kernel_args(t))
    if m is not None:
        return m
    # min/max propagate NaN and show +-Inf: two cheap reductions instead of isfinite().all()
    lo = float(x.min()) if x.size else 0.0
    hi = float(x.max()) if x.size else 0.0
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise InputError(
            f"{what} contains {bad} NaN/Inf value(s); clean the data before quantizing"
        )
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return _quantize_finite(x.astype(np.float64, copy=False), t, max(abs(lo), abs(hi)))


def _quantize_finite(x: np.ndarray, t: FixedType, x_abs_max: float) -> np.ndarray:
    """Finite float64 ``x`` (``x_abs_max`` its largest magnitude) to t's integers."""
    y = np.ldexp(x, t.frac)  # exact unless it leaves the normal double range (handled below)
    y_abs_max = float(np.ldexp(x_abs_max, t.frac))
    fl = np.floor(y)
    if t.rounding == "TRN":
        q = fl
    else:
        # y - fl is inexact for y in (-0.5, 0), so compare y with fl + 0.5 (exact below 2**52;
        # above, y is an integer and nothing is rounded)
        half = fl + 0.5
        qb = y >= half  # Xilinx's qb: the first dropped bit
        if y_abs_max >= 2.0**52:
            qb &= np.abs(y) < 2.0**52
        # only the modes that read them pay for r, neg and odd
        r = (y != fl) & (y != half) if t.rounding not in ("RND", "TRN") else None
        neg = x < 0 if t.rounding in ("RND_ZERO", "RND_INF", "TRN_ZERO") else None
        # fl is an integer: odd iff fl - 2*floor(fl/2) != 0 (exact; np.fmod is ~100x slower)
        odd = (fl - 2.0 * np.floor(fl * 0.5)) != 0 if t.rounding == "RND_CONV" else None
        inc = round_increment(qb, r, neg, odd, t.rounding)
        q = fl + inc
    # huge values (|y| >= 2**62, inf after scaling) and nonzero values that underflowed to 0
    # (only possible when scaling down)
    special = None
    if y_abs_max >= 2.0**_SAFE_BITS:
        special = np.abs(y) >= 2.0**_SAFE_BITS
    if t.frac < 0:
        under = (y == 0) & (x != 0)
        special = under if special is None else special | under
    if special is None or not special.any():
        return overflow(q.astype(np.int64), t)
    m = q.astype(object)
    m[~special] = q[~special].astype(np.int64)
    idx = np.flatnonzero(special)
    flat = m.reshape(-1)
    xf = x.reshape(-1)
    for i in idx:
        flat[i] = _quantize_double_exact(float(xf[i]), t)
    return overflow(m, t)


def _quantize_double_exact(v: float, t: FixedType) -> int:
    """One double quantized with Python integers (before overflow)."""
    num, den = v.as_integer_ratio()  # den is a power of two
    k = den.bit_length() - 1 - t.frac  # v * 2**frac = num / 2**k
    if k <= 0:
        return num << -k
    return int(_quantize_shift(np.array([num], dtype=object), k, t.rounding)[0])


def to_float(m: np.ndarray, frac: int | FixedType) -> np.ndarray:
    """Float64 values of integers with ``frac`` fractional bits (exact below 2**53)."""
    f = frac.frac if isinstance(frac, FixedType) else frac
    m = np.asarray(m)
    if m.dtype == object:
        return np.array([float(v) for v in m.flat], dtype=np.float64).reshape(m.shape) * 2.0**-f
    return np.ldexp(m.astype(np.float64), -f)


def cast(m: np.ndarray, src: FixedType, dst: FixedType) -> np.ndarray:
    """``(dst) x`` for x of type src (integers within src's range).

    Same bits as :func:`requantize`; skips the overflow scan when no value of src
    can leave dst's range after quantization.
    """
    shift = src.frac - dst.frac
    if shift > 0:
        lo = src.min_int >> shift
        hi = (src.max_int >> shift) + (0 if dst.rounding == "TRN" else 1)
    else:
        lo, hi = src.min_int << -shift, src.max_int << -shift
    d_lo = (
        -dst.max_int if dst.overflow == "SAT_SYM" and dst.signed and dst.width > 1 else dst.min_int
    )
    m = np.asarray(m)
    if not (d_lo <= lo and hi <= dst.max_int) or m.dtype == object:
        return requantize(m, src.frac, dst)
    if shift > 0:
        return _quantize_shift(as_exact(m), shift, dst.rounding)
    return as_exact(m, -shift) << (-shift) if shift < 0 else as_exact(m)


# ---------------------------------------------------------------------------
# sizing helpers used by auto precision


def type_for_int_range(
    lo: int,
    hi: int,
    frac: int,
    signed: bool | None = None,
    rounding: str = "TRN",
    overflow_mode: str = "WRAP",
) -> FixedType:
    """Smallest type with ``frac`` fractional bits holding the integers lo..hi (at that scale)."""
    if signed is None:
        signed = lo < 0
    if signed:
        width = max(_signed_bits(lo), _signed_bits(hi), 1)
    else:
        if lo < 0:
            raise FixedTypeError("unsigned type requested for a range with negative values")
        width = max(int(hi).bit_length(), 1)
    if width > MAX_WIDTH:
        raise FixedTypeError(
            f"exact range needs {width} bits, more than the supported {MAX_WIDTH}; "
            "reduce input precision or set explicit types"
        )
    return FixedType(width, width - frac, signed, rounding, overflow_mode)


def _signed_bits(v: int) -> int:
    v = int(v)
    return (v.bit_length() + 1) if v >= 0 else ((-v - 1).bit_length() + 1)
