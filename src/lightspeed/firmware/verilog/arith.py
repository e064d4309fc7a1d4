"""Arithmetic building blocks shared by the op emitters: casts, constant products and MACs.

The multiply-accumulate follows the contract in :mod:`lightspeed.ops.mac`::

    acc = (accum_t) bias
    for i in inputs: acc = (accum_t)(acc + (accum_t)(x[i] * w[i]))
    y = (result_t) acc

and lowers it to an adder tree wherever that gives the same bits: the
accumulator wraps (two's complement sums are exact modulo 2**W in any order),
or interval analysis over the actual input bounds proves no partial sum can
overflow. Otherwise (a saturating accumulator that might overflow) it emits
the sequential chain in input order. Zero weights disappear, ``±2**k``
weights become wiring, and trailing zero bits of a weight are folded into its
scale so products are only rounded when they really have extra bits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.netlist import Netlist, Sig
from lightspeed.fixed import FixedType, requantize


def cast_to(nl: Netlist, s: Sig, t: FixedType) -> Sig:
    """``(t) s``: cast a signal to a role's type, with that type's rounding and overflow."""
    return nl.cast(s, t.frac, t.rounding, t)


def map_sigs(arr: np.ndarray, fn: Callable[[Sig], Sig]) -> np.ndarray:
    """``fn`` applied to every signal of a tensor (an object array of the same shape)."""
    out = np.empty(arr.shape, dtype=object)
    for idx, s in np.ndenumerate(arr):
        out[idx] = fn(s)
    return out


def csd(c: int) -> list[tuple[int, int]]:
    """Canonical signed digits of c: [(shift, ±1)], fewest non-zero digits."""
    out = []
    k = 0
    while c != 0:
        if c & 1:
            d = 2 - (c & 3)  # +1 if c % 4 == 1, -1 if c % 4 == 3
            out.append((k, d))
            c -= d
        c >>= 1
        k += 1
    return out


def trailing_zeros(c: int) -> int:
    c = abs(int(c))
    return (c & -c).bit_length() - 1 if c else 0


@dataclass
class Product:
    """x * c * 2**-c_frac as a list of signed terms that sum to it (exactly)."""

    terms: list[tuple[Sig, bool]]
    frac: int


def const_product(nl: Netlist, x: Sig, c: int, c_frac: int, opts: FirmwareOptions) -> Product:
    """Terms of ``x * c`` (c an integer at ``c_frac`` fractional bits), never a zero term."""
    c = int(c)
    tz = trailing_zeros(c)
    c >>= tz
    frac = x.frac + c_frac - tz
    if c in (1, -1):
        return Product([(Sig(x.net, frac), c < 0)], frac)
    digits = csd(c)
    use_dsp = opts.multipliers == "dsp" or (
        opts.multipliers == "auto" and len(digits) > opts.lut_max_digits
    )
    if use_dsp:
        key = ("mulc", x.net, x.frac, c, c_frac - tz)
        m = nl.memo.get(key)
        if m is None:  # one multiplier per distinct (input, constant) pair
            m = nl.memo[key] = nl.mulc(x, c, c_frac - tz)
        return Product([(m, False)], frac)
    # x * sum(d_k 2**k) = sum d_k (x at scale frac - k)
    return Product([(Sig(x.net, frac - k), d < 0) for k, d in digits], frac)


def product_sig(nl: Netlist, p: Product) -> Sig:
    """One signal holding the product (sums shift-and-add terms)."""
    if len(p.terms) == 1 and not p.terms[0][1]:
        return p.terms[0][0]
    return nl.sum(p.terms)


def _term_bounds(nl: Netlist, terms: list[tuple[Sig, bool]], frac: int) -> tuple[int, int]:
    """Bounds of sum(terms) at scale ``frac`` (every term at scale <= frac)."""
    lo = hi = 0
    for s, negate in terms:
        n = nl.net(s)
        sh = frac - s.frac
        a, b = (n.lo << sh, n.hi << sh) if not negate else (-(n.hi << sh), -(n.lo << sh))
        lo, hi = lo + a, hi + b
    return lo, hi


@dataclass
class MacPlan:
    """One output's multiply-accumulate, planned: products and how they will be summed.

    ``tree`` holds the terms that go straight into the adder tree (the term is on the
    accumulator's grid, and the accumulator provably never overflows or wraps); only
    those may be regrouped across outputs (:mod:`lightspeed.firmware.verilog.cse`):
    exact integer sums do not depend on the order of additions, and wrapping is a ring
    map, so a wrapped sum does not either.
    """

    products: list[Product]
    acc0: int
    acc_t: FixedType
    res_t: FixedType
    safe: bool
    wraps: bool
    tree: list[tuple[Sig, bool]] | None = None


def plan_mac(
    nl: Netlist,
    xs: list[Sig | None],
    w: np.ndarray,
    w_t: FixedType,
    bias: int | None,
    b_t: FixedType | None,
    acc_t: FixedType,
    res_t: FixedType,
    opts: FirmwareOptions,
) -> MacPlan:
    """Products of one output and the contract's worst-case partial sums."""
    acc0 = (
        0
        if bias is None or b_t is None
        else int(requantize(np.array([bias], dtype=object), b_t.frac, acc_t)[0])
    )
    products: list[Product] = []
    for x, wi in zip(xs, w, strict=True):
        if x is None or int(wi) == 0 or nl.net(x).lo == nl.net(x).hi == 0:
            continue
        products.append(const_product(nl, x, int(wi), w_t.frac, opts))

    return plan_products(nl, products, acc0, acc_t, res_t)


def plan_products(
    nl: Netlist, products: list[Product], acc0: int, acc_t: FixedType, res_t: FixedType
) -> MacPlan:
    """A MAC plan over given products (constant or signal x signal), checking the
    contract's worst-case partial sums to choose the exact tree or the sequential form."""
    F = acc_t.frac
    lo, hi = min(acc0, 0), max(acc0, 0)
    for p in products:
        plo, phi = _term_bounds(nl, p.terms, p.frac)
        s = p.frac - F
        if s > 0:
            plo, phi = plo >> s, (phi >> s) + (0 if acc_t.rounding == "TRN" else 1)
        else:
            plo, phi = plo << -s, phi << -s
        lo, hi = lo + min(plo, 0), hi + max(phi, 0)
    wraps = acc_t.overflow == "WRAP"
    safe = acc_t.min_int <= lo and hi <= acc_t.max_int
    plan = MacPlan(products, acc0, acc_t, res_t, safe, wraps)
    if safe or wraps:
        plan.tree = [t for p in products if p.frac <= F for t in p.terms]
    return plan


def cast_product(nl: Netlist, p: Product, frac: int, rounding: str, t: FixedType | None) -> Sig:
    """``(t) product`` quantized to ``frac``; the same product and cast is built only once
    (with narrow weights many outputs multiply one input by the same constant)."""
    key = (tuple((s.net, s.frac, neg) for s, neg in p.terms), p.frac, frac, rounding, t)
    hit = nl.memo.get(key)
    if hit is None:
        hit = nl.memo[key] = nl.cast(product_sig(nl, p), frac, rounding, t)
    return hit


def finish_mac(nl: Netlist, plan: MacPlan) -> Sig:
    """The output signal of a planned MAC (``plan.tree`` possibly regrouped since)."""
    acc_t, res_t, acc0 = plan.acc_t, plan.res_t, plan.acc0
    F = acc_t.frac
    wraps, safe = plan.wraps, plan.safe
    if wraps or safe:
        terms: list[tuple[Sig, bool]] = list(plan.tree) if plan.tree is not None else []
        for p in plan.products:
            if p.frac <= F:
                if plan.tree is None:
                    terms.extend(p.terms)  # exact on the accumulator grid: into the tree
            else:
                terms.append(
                    (cast_product(nl, p, F, acc_t.rounding, acc_t if wraps else None), False)
                )
        if acc0:
            terms.append((nl.const(acc0, F), False))
        if safe and res_t.rounding == "RND" and res_t.frac < F:
            # round-half-up folded into the tree: floor((acc + 2**(s-1)) / 2**s) saves an adder
            # level; exact because the accumulator provably never overflows (its cast is a no-op)
            terms.append((nl.const(1 << (F - res_t.frac - 1), F), False))
            total = nl.sum(terms)
            return nl.cast(total, res_t.frac, "TRN", res_t)
        total = nl.sum(terms, wrap_frac=(acc_t.width, F) if wraps else None)
        acc = nl.cast(total, F, "TRN", acc_t)
    else:
        acc = nl.const(acc0, F)
        for p in plan.products:
            q = cast_product(nl, p, F, acc_t.rounding, acc_t)
            acc = nl.cast(nl.add(acc, q), F, "TRN", acc_t)
    return nl.cast(acc, res_t.frac, res_t.rounding, res_t)
