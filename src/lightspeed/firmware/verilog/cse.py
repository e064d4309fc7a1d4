"""Shared adder graphs: common subexpressions across the outputs of one weight matrix.

Every output of a dense/conv layer is a sum of shifted inputs (one term per
canonical-signed-digit of each weight). The same pair of terms, up to a common
shift, often appears in several outputs: ``x3 + x7<<2`` in one column and
``(x3 + x7<<2)<<1`` in another. Computing such a pair once and reusing it saves
one adder per extra use, which is what distributed-arithmetic tools (da4ml) do
for constant matrix-vector products.

The search is greedy (pairwise, the classic multiple-constant-multiplication
heuristic): count, per output, every pair of terms normalised by shift and sign;
make the most frequent pairs into new signals; repeat on the rewritten lists
(new signals pair up again, so deeper shared graphs form). Only terms of exact
accumulations are regrouped (:class:`~lightspeed.firmware.verilog.arith.MacPlan`
``tree``), where the order of additions cannot change the result: the firmware
stays bit-exact with the emulator.
"""

from __future__ import annotations

from collections import Counter

from lightspeed.firmware.netlist import Netlist, Sig

Term = tuple[Sig, bool]
Key = tuple[int, int, int, bool]  # (net a, net b, frac_b - frac_a, signs differ)

MAX_ROUNDS = 48
PER_ROUND = 256  # pairs made per round (the most frequent first)
MAX_TERMS = 400  # outputs with more terms are left alone (pair counting is quadratic)


def _key(t: Term, u: Term) -> tuple[Key, Term, Term]:
    """The shift/sign-normalised identity of a pair, with its two terms in key order."""
    (a, na), (b, nb) = t, u
    if (b.net, b.frac) < (a.net, a.frac):
        (a, na), (b, nb) = (b, nb), (a, na)
        t, u = u, t
    return (a.net, b.net, b.frac - a.frac, na != nb), t, u


def _pairs(terms: list[Term]) -> set[Key]:
    keys = set()
    n = len(terms)
    for i in range(n):
        for j in range(i + 1, n):
            key = _key(terms[i], terms[j])[0]
            if key[0] != key[1] or key[2] != 0:
                keys.add(key)
    return keys


def share_subexpressions(nl: Netlist, lists: list[list[Term]]) -> tuple[list[list[Term]], int]:
    """Rewrite the term lists with shared pair sums; returns them and the adders saved."""
    lists = [list(t) for t in lists]
    made: dict[Key, Sig] = {}  # pair -> its signal (value x_a + -x_b * 2**-(d))
    uses: Counter[Key] = Counter()
    for _ in range(MAX_ROUNDS):
        counts: Counter[Key] = Counter()
        for terms in lists:
            if 1 < len(terms) <= MAX_TERMS:
                counts.update(_pairs(terms))
        chosen = [k for k, c in counts.most_common(PER_ROUND) if c >= 2]
        if not chosen:
            break
        changed = False
        for key in chosen:
            for terms in lists:
                if _replace(nl, terms, key, made):
                    uses[key] += 1
                    changed = True
        if not changed:
            break
    # every pair signal costs one adder and saves one per use
    saved = sum(n - 1 for n in uses.values())
    return lists, saved


def _replace(nl: Netlist, terms: list[Term], key: Key, made: dict[Key, Sig]) -> bool:
    """Replace one occurrence of ``key`` in ``terms`` by the shared signal."""
    a_net, b_net, d, differ = key
    first: dict[int, tuple[int, bool]] = {}
    for i, (s, neg) in enumerate(terms):
        if s.net == a_net:
            first.setdefault(s.frac, (i, neg))
    for j, (s, neg_b) in enumerate(terms):
        if s.net != b_net:
            continue
        hit = first.get(s.frac - d)
        if hit is None or hit[0] == j or (hit[1] != neg_b) != differ:
            continue
        i, neg_a = hit
        sa = terms[i][0]
        shared = made.get(key)
        if shared is None:
            # x_a - or + x_b * 2**-d, at the scale of x_a's term taken as 0
            shared = made[key] = nl.add(Sig(a_net, 0), Sig(b_net, d), sub=differ)
        new = (Sig(shared.net, shared.frac + sa.frac), neg_a)
        for k in sorted((i, j), reverse=True):
            terms.pop(k)
        terms.append(new)
        return True
    return False
