"""Emitters for :mod:`lightspeed.ops.gather`: gather_elements and scatter_add.

Constant indices are wiring (gather) or one adder tree per output (scatter).
An index input becomes, per gathered element, a binary tree of comparisons
``idx >= k`` selecting among the n candidates (a multiplexer), and, per
scattered update and node, an equality select feeding the node's adder tree.
Comparisons are built once per index signal and shared by all features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.firmware.netlist import Netlist, Sig
from lightspeed.firmware.verilog.arith import cast_to
from lightspeed.firmware.verilog.lowering import EmitContext, register
from lightspeed.ops.gather import targets


def _int_const(nl: Netlist, k: int, frac: int) -> Sig:
    """The integer ``k`` as a signal at scale ``frac`` (exact)."""
    return nl.const(k << frac, frac) if frac >= 0 else nl.const(k, 0)


def _ge(nl: Netlist, idx: Sig, k: int, memo: dict) -> Sig:
    """A signal > 0 exactly where ``idx >= k`` (idx - (k - 1), idx integer-valued)."""
    key = ("ge", idx.net, k)
    if key not in memo:
        memo[key] = nl.add(idx, _int_const(nl, k - 1, idx.frac), sub=True)
    return memo[key]


def _eq(nl: Netlist, idx: Sig, k: int, memo: dict) -> Sig:
    """A signal > 0 exactly where ``idx == k``: (idx - k > 0) ? 0 : idx - k + 1."""
    key = ("eq", idx.net, k)
    if key not in memo:
        above = nl.add(idx, _int_const(nl, k, idx.frac), sub=True)
        memo[key] = nl.select_pos(above, nl.const(0, idx.frac), _ge(nl, idx, k, memo))
    return memo[key]


def _mux(nl: Netlist, idx: Sig, cands: list[Sig], lo: int, hi: int, memo: dict) -> Sig:
    """cands[idx] for idx in lo..hi (binary tree of comparisons)."""
    if lo == hi:
        return cands[lo]
    mid = (lo + hi + 1) // 2
    upper = _mux(nl, idx, cands, mid, hi, memo)
    lower = _mux(nl, idx, cands, lo, mid - 1, memo)
    return nl.select_pos(_ge(nl, idx, mid, memo), upper, lower)


def _const_indices(ctx: EmitContext) -> np.ndarray:
    return np.asarray(ctx.node.attrs["indices"], dtype=np.int64)


@register("gather_elements")
def emit_gather_elements(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    x, nl = ins[0], ctx.nl
    axis = int(ctx.node.attrs["axis"])
    ind = _const_indices(ctx) if len(ins) == 1 else ins[1]
    out = np.empty(ind.shape, dtype=object)
    memo: dict = {}
    n = x.shape[axis]
    for pos in np.ndindex(*ind.shape):
        if len(ins) == 1:
            src = list(pos)
            src[axis] = int(ind[pos])
            out[pos] = x[tuple(src)]
            continue
        cands = [x[(*pos[:axis], k, *pos[axis + 1 :])] for k in range(n)]
        sel: Any = ind[pos]
        hi = min(n - 1, max(nl.net(sel).hi >> max(sel.frac, 0), 0))
        out[pos] = _mux(nl, sel, cands, 0, hi, memo)
    return [out]


@register("scatter_add")
def emit_scatter_add(ctx: EmitContext, ins: list[np.ndarray]) -> list[np.ndarray]:
    u, nl, res = ins[0], ctx.nl, ctx.prec["result"]
    shape = tuple(int(d) for d in ctx.node.attrs["shape"])
    axis = int(ctx.node.attrs["axis"])
    zero = nl.const(0, ctx.in_types[0].frac)
    terms: list[list[Sig]] = [[] for _ in range(int(np.prod(shape)))]
    if len(ins) == 1:  # constant indices: each update feeds one node's adder tree
        tgt = targets(ctx.node, _const_indices(ctx)[None], u.shape)[0]
        for s, t in zip(u.reshape(-1), tgt, strict=True):
            terms[int(t)].append(s)
    else:  # an index input: every update may feed every node of its line
        memo: dict = {}
        idx = ins[1]
        n = shape[axis]
        for pos in np.ndindex(*u.shape):
            for k in range(n):
                dst = list(pos)
                dst[axis] = k
                flat = int(np.ravel_multi_index(tuple(dst), shape))
                sel: Any = idx[pos]
                upd: Any = u[pos]
                terms[flat].append(nl.select_pos(_eq(nl, sel, k, memo), upd, zero))
    out = np.empty(len(terms), dtype=object)
    for i, ts in enumerate(terms):
        total = nl.sum([(s, False) for s in ts]) if ts else zero
        out[i] = cast_to(nl, total, res)  # the exact sum, cast once
    return [out.reshape(shape)]
