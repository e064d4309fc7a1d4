"""Tree ensembles (boosted decision trees, random forests): the ``tree_ensemble`` op.

One node holds every tree of the ensemble as flat arrays (``N`` nodes in all,
``T`` trees, ``K`` outputs, ``L`` leaf columns)::

    feature    (N,)   int   feature compared at an internal node; -1 at a leaf
    threshold  (N,)   float split threshold (ignored at leaves)
    left/right (N,)   int   global index of the children; -1 at a leaf
    value      (N, L) float leaf value(s) (ignored at internal nodes)
    roots      (T,)   int   global index of each tree's root
    tree_class (T,)   int   output a tree adds to when L == 1; -1 when L == K
                            (each leaf then holds one value per output)
    base       (K,)   float initial score (sklearn ``init``, XGBoost base margin)

Attrs: ``n_features`` (input width), ``n_outputs`` (K), ``split``
(``"le"``: go left when ``x[f] <= t``, scikit-learn/LightGBM; ``"lt"``: when
``x[f] < t``, XGBoost), ``link`` (what the source applies after the score:
``identity``, ``logistic``, ``softmax``, ``exp``; informational), ``source``
and optionally ``input_cast="float32"`` (the source compares float32 copies
of the inputs, as scikit-learn and XGBoost do; the float model does too).

**Float semantics**: ``score[k] = base[k] + sum of the leaves the sample
reaches in every tree of output k`` — the raw margin / decision function of
the source model *before* its link function (sklearn ``decision_function``
or ``_raw_predict``, XGBoost ``output_margin=True``, LightGBM
``raw_score=True``; a random forest gives the mean of the trees' class
probabilities, its ``predict_proba``).

**Fixed semantics** (roles ``threshold``, ``leaf``, ``bias``, ``accum``,
``result``):

* Thresholds are put on the threshold type's grid with *directed* rounding so
  that comparisons keep the float decision for every representable input:
  for ``x <= t`` a threshold becomes the largest representable value ``<= t``
  (``floor``); for ``x < t`` the largest representable value ``< t``
  (``ceil - 1``), after which the comparison is ``x <= t_q`` too. Values
  outside the type saturate (a threshold below every input means "always
  right", above every input "always left"). The threshold type's own
  rounding mode is not used. Auto precision uses the input's fractional bits
  (plus one integer bit where a threshold lies outside the input's range), so
  the fixed decisions equal the float model's decisions on the quantized
  inputs, exactly. Auto ``leaf`` has ``weight_bits``; ``bias`` sits on the
  leaves' grid.
* The comparison ``x <= t_q`` is exact between the two types (as ap_fixed).
* Leaves are cast to ``leaf`` and the base to ``bias`` (their rounding and
  overflow modes); each is then cast to ``accum`` and summed per output in
  tree order, ``acc = (accum_t)(acc + (accum_t)leaf)`` starting from
  ``(accum_t)bias`` (like a dense layer's MAC); ``result = (result_t)acc``.
  Auto precision makes ``accum`` exact (no overflow for any input) and
  ``result`` equal to it.

Missing values: fixed-point inputs cannot hold NaN, so the emulator refuses
NaN inputs (``InputError``) for the float and the fixed model alike; learned
default directions of the source model are not used. Categorical splits are
refused by the importers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lightspeed.errors import ConfigError, ModelError, ShapeError
from lightspeed.fixed import FixedType, as_exact, overflow, requantize, type_for_int_range
from lightspeed.ir.graph import Node, Shape
from lightspeed.ops.base import (
    AutoContext,
    Cost,
    CostContext,
    Fx,
    Op,
    Precision,
    QParams,
    exact_type,
    param_type,
    quantize_param,
)

if TYPE_CHECKING:
    from lightspeed.quantize.model import QuantizedModel


SPLITS = ("le", "lt")
_HEAP_MAX_DEPTH = 10  # deeper trees are walked node by node instead of as padded complete trees
_BLOCK_ELEMS = 1 << 22  # comparison-matrix elements per batch block (keeps it in cache)


# ---------------------------------------------------------------------------
# structure


@dataclass(frozen=True)
class Ensemble:
    """The node's arrays, checked and typed."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    tree_class: np.ndarray
    base: np.ndarray
    n_features: int
    n_outputs: int
    split: str

    @property
    def n_trees(self) -> int:
        return int(self.roots.size)

    @property
    def is_leaf(self) -> np.ndarray:
        return self.feature < 0


def ensemble(node: Node) -> Ensemble:
    """Read and validate a ``tree_ensemble`` node's params (raises ModelError when inconsistent)."""
    p, a = node.params, node.attrs
    try:
        e = Ensemble(
            feature=np.asarray(p["feature"]).astype(np.int64),
            threshold=np.asarray(p["threshold"], dtype=np.float64),
            left=np.asarray(p["left"]).astype(np.int64),
            right=np.asarray(p["right"]).astype(np.int64),
            value=np.asarray(p["value"], dtype=np.float64).reshape(len(p["feature"]), -1),
            roots=np.asarray(p["roots"]).astype(np.int64),
            tree_class=np.asarray(p["tree_class"]).astype(np.int64),
            base=np.asarray(p["base"], dtype=np.float64).reshape(-1),
            n_features=int(a["n_features"]),
            n_outputs=int(a["n_outputs"]),
            split=str(a.get("split", "le")),
        )
    except KeyError as exc:
        raise ModelError(f"tree_ensemble node {node.name!r} lacks {exc.args[0]!r}") from None
    _check(node.name, e)
    return e


def _check(name: str, e: Ensemble) -> None:
    n = e.feature.size
    if e.split not in SPLITS:
        raise ModelError(f"node {name!r}: split must be one of {SPLITS}, got {e.split!r}")
    if not (e.threshold.size == e.left.size == e.right.size == e.value.shape[0] == n):
        raise ModelError(f"node {name!r}: tree arrays have different lengths")
    if e.roots.size == 0 or e.roots.size != e.tree_class.size:
        raise ModelError(f"node {name!r}: needs at least one tree and one tree_class per root")
    if e.base.size != e.n_outputs:
        raise ModelError(f"node {name!r}: base has {e.base.size} values for {e.n_outputs} outputs")
    if e.value.shape[1] not in (1, e.n_outputs):
        raise ModelError(
            f"node {name!r}: leaves hold {e.value.shape[1]} values; expected 1 or {e.n_outputs}"
        )
    if (
        e.value.shape[1] == 1
        and e.n_outputs > 1
        and (np.any(e.tree_class < 0) or np.any(e.tree_class >= e.n_outputs))
    ):
        raise ModelError(f"node {name!r}: tree_class must lie in 0..{e.n_outputs - 1}")
    internal = ~e.is_leaf
    if np.any(e.feature[internal] >= e.n_features):
        f = int(e.feature[internal].max())
        raise ModelError(
            f"node {name!r}: the trees use feature {f} but the input has {e.n_features} features; "
            "declare the full input width (n_features) or retrain on the declared features"
        )
    kids = np.concatenate([e.left[internal], e.right[internal]])
    if np.any(kids < 0) or np.any(kids >= n) or np.any(e.roots < 0) or np.any(e.roots >= n):
        raise ModelError(f"node {name!r}: child or root index out of range")
    if not np.all(np.isfinite(e.threshold[internal])) or not np.all(
        np.isfinite(e.value[e.is_leaf])
    ):
        raise ModelError(f"node {name!r}: thresholds and leaf values must be finite")


@dataclass(frozen=True)
class Layout:
    """Trees padded to complete binary trees of depth ``depth`` in heap order.

    Slot ``i`` of a tree has children ``2i+1``/``2i+2``; a leaf above the last
    level is repeated below itself, so its slots compare anything and lead to
    the same leaf. ``slot_node`` (T, 2**depth - 1) holds the node each
    internal slot tests (a leaf for padding); ``leaf_node`` (T, 2**depth) the
    leaf at each bottom position.
    """

    depth: int
    slot_node: np.ndarray
    leaf_node: np.ndarray


def tree_depth(e: Ensemble) -> int:
    """Longest root-to-leaf path (number of comparisons)."""
    cur, depth = e.roots, 0
    while True:
        inner = cur[~e.is_leaf[cur]]
        if inner.size == 0:
            return depth
        cur, depth = np.concatenate([e.left[inner], e.right[inner]]), depth + 1
        if depth > e.feature.size:
            raise ModelError("tree_ensemble: the child links form a cycle")


def layout(e: Ensemble, depth: int | None = None) -> Layout:
    depth = tree_depth(e) if depth is None else depth
    cur = e.roots[:, None]
    slots = []
    for _ in range(depth):
        slots.append(cur)
        leaf = e.is_leaf[cur]
        lc = np.where(leaf, cur, e.left[cur])
        rc = np.where(leaf, cur, e.right[cur])
        cur = np.stack([lc, rc], axis=2).reshape(cur.shape[0], -1)
    slot_node = np.concatenate(slots, axis=1) if slots else np.zeros((e.n_trees, 0), np.int64)
    return Layout(depth, slot_node, cur)


# ---------------------------------------------------------------------------
# traversal (shared by the float and fixed paths: only the compared numbers differ)
#
# Trees of depth <= _HEAP_MAX_DEPTH are evaluated like the hardware does:
# every slot of the padded complete tree is compared at once (on byte-sized
# threshold ranks, features-major so the gather is a row gather), a tree's
# decisions are packed into one integer and the path is followed with shifts.
# Deeper trees are walked node by node.


@dataclass(frozen=True)
class _Ranks:
    """A layout's comparisons on small integers: ``x[f] <= t`` (``<``) iff ``rank_f(x) <= r``.

    ``cuts[f]`` are the sorted distinct thresholds on feature f; ``rank_f(x)``
    counts the cuts below ``x`` (at or below for ``<``) and ``r`` is a slot's
    threshold's index among the cuts. Exact for any ordered numbers, and the
    (slots x samples) comparison then runs on bytes instead of 4-8 byte words.
    """

    feat: np.ndarray  # (M,) feature of each slot
    rank: np.ndarray  # (M, 1) threshold index of each slot
    cuts: tuple[np.ndarray, ...]
    side: Literal["left", "right"]

    @staticmethod
    def of(e: Ensemble, thr: np.ndarray, strict: bool, lay: Layout) -> _Ranks:
        feat = np.maximum(e.feature[lay.slot_node], 0).reshape(-1)
        th = thr[lay.slot_node].reshape(-1)
        rank = np.zeros(feat.size, dtype=np.int64)
        cuts = []
        for f in range(e.n_features):
            sel = feat == f
            u = np.unique(th[sel])
            cuts.append(u)
            rank[sel] = np.searchsorted(u, th[sel])
        most = max((u.size for u in cuts), default=0)
        dt = np.uint8 if most < 255 else np.uint16 if most < 65535 else np.int64
        return _Ranks(
            feat, rank.astype(dt).reshape(-1, 1), tuple(cuts), "right" if strict else "left"
        )

    def go_left(self, xt: np.ndarray) -> np.ndarray:
        """(M, b) decisions for the samples in the columns of ``xt`` (features, b)."""
        xr = np.empty(xt.shape, dtype=self.rank.dtype)
        for f, u in enumerate(self.cuts):
            xr[f] = np.searchsorted(u, xt[f], side=self.side) if u.size else 0
        return xr[self.feat] <= self.rank


def _positions(xt: np.ndarray, e: Ensemble, ranks: _Ranks, lay: Layout) -> np.ndarray:
    """Bottom position (T, b) each column of ``xt`` (features, b) reaches in each padded tree."""
    t, d = e.n_trees, lay.depth
    n_slots = (1 << d) - 1
    if d == 0:
        return np.zeros((t, xt.shape[1]), dtype=np.int64)
    c = ranks.go_left(xt).reshape(t, n_slots, -1)  # True = go left
    if n_slots > 63:
        h = np.zeros((t, xt.shape[1]), dtype=np.int64)
        for _ in range(d):
            h = 2 * h + 2 - np.take_along_axis(c, h[:, None, :], axis=1)[:, 0, :]
        return h - n_slots
    code_t = (
        np.uint8
        if n_slots <= 8
        else np.uint16
        if n_slots <= 16
        else np.uint32
        if n_slots <= 32
        else np.uint64
    )
    # code = sum_j c_j << j (distinct bits: the sum never carries)
    weights: Any = np.array([1 << j for j in range(n_slots)], dtype=code_t)
    code = np.einsum("tsb,s->tb", c.view(np.uint8), weights).astype(code_t, copy=False)
    # heap index h: children 2h+1 (left) and 2h+2 (right); uint8 h suffices up to depth 3 (h <= 14)
    h_t = code_t if n_slots <= 8 else np.uint16 if d <= 15 else np.uint32
    h = np.zeros(code.shape, dtype=h_t)
    one, two = code_t(1), h_t(2)
    for _ in range(d):
        h = two * h + two - ((code >> h.astype(code_t, copy=False)) & one).astype(h_t, copy=False)
    return h.astype(np.int64) - n_slots


def _blocks(n: int, per_row: int):
    rows = max(256, _BLOCK_ELEMS // max(1, per_row))
    for s in range(0, n, rows):
        yield s, min(n, s + rows)


def _leaves(x: np.ndarray, e: Ensemble, thr: np.ndarray, strict: bool) -> np.ndarray:
    """Global leaf index (B, T) each sample reaches; go left when x[f] <= thr (< when strict)."""
    depth = tree_depth(e)
    if depth > _HEAP_MAX_DEPTH:
        return _leaves_walk(x, e, thr, strict, depth)
    lay = layout(e, depth)
    ranks = _Ranks.of(e, thr, strict, lay)
    flat = lay.leaf_node.reshape(-1)
    base = (np.arange(e.n_trees, dtype=np.int64) << depth)[:, None]
    out = np.empty((x.shape[0], e.n_trees), dtype=np.int64)
    for s, stop in _blocks(x.shape[0], lay.slot_node.size):
        pos = _positions(np.ascontiguousarray(x[s:stop].T), e, ranks, lay)
        out[s:stop] = flat[base + pos].T
    return out


def _leaves_walk(
    x: np.ndarray, e: Ensemble, thr: np.ndarray, strict: bool, depth: int
) -> np.ndarray:
    leaf = e.is_leaf
    idx = np.arange(e.feature.size)
    left = np.where(leaf, idx, e.left)
    right = np.where(leaf, idx, e.right)
    feat = np.maximum(e.feature, 0)
    cur = np.broadcast_to(e.roots, (x.shape[0], e.n_trees)).copy()
    for _ in range(depth):
        xv = np.take_along_axis(x, feat[cur], axis=1)
        th = thr[cur]
        go = (xv < th) if strict else (xv <= th)
        cur = np.where(go, left[cur], right[cur])
    return cur


def _sums(
    x: np.ndarray, e: Ensemble, thr: np.ndarray, strict: bool, table: np.ndarray
) -> np.ndarray:
    """Per output, the sum over trees of ``table[leaf]`` (float64, table (N, L)) -> (B, K)."""
    k, width = e.n_outputs, table.shape[1]
    # trees grouped by output so one contiguous slice sums each output
    cls = np.maximum(e.tree_class, 0) if width == 1 else np.zeros(e.n_trees, dtype=np.int64)
    order = np.argsort(cls, kind="stable")
    starts = np.searchsorted(cls[order], np.arange(k))
    counts = np.bincount(cls, minlength=k)
    depth = tree_depth(e)
    out = np.zeros((x.shape[0], k))
    if depth > _HEAP_MAX_DEPTH:
        vals = table[_leaves_walk(x, e, thr, strict, depth)]  # (B, T, L)
        if width == 1:
            for j in range(k):
                out[:, j] = (
                    vals[:, e.tree_class == j, 0].sum(axis=1)
                    if k > 1
                    else vals[:, :, 0].sum(axis=1)
                )
        else:
            out[:] = vals.sum(axis=1)
        return out
    sub = _reorder(e, order)
    lay = layout(sub, depth)
    ranks = _Ranks.of(sub, thr, strict, lay)
    base = (np.arange(sub.n_trees, dtype=np.int64) << depth)[:, None]
    leaf_vals = table[lay.leaf_node.reshape(-1)]  # (T * 2**depth, L)
    for s, stop in _blocks(x.shape[0], lay.slot_node.size):
        pos = _positions(np.ascontiguousarray(x[s:stop].T), sub, ranks, lay)
        if width == 1:
            vals = leaf_vals[base + pos, 0]  # (T, b), trees grouped by output
            for j in range(k):
                if counts[j]:
                    out[s:stop, j] = vals[starts[j] : starts[j] + counts[j]].sum(axis=0)
        else:
            out[s:stop] = leaf_vals[base + pos].sum(axis=0)
    return out


def _reorder(e: Ensemble, order: np.ndarray) -> Ensemble:
    """The same ensemble with its trees listed in ``order`` (node arrays unchanged)."""
    if np.array_equal(order, np.arange(e.n_trees)):
        return e
    return Ensemble(
        e.feature, e.threshold, e.left, e.right, e.value, e.roots[order], e.tree_class[order], e.base,
        e.n_features, e.n_outputs, e.split,
    )  # fmt: skip


def float_inputs(node: Node, x: np.ndarray) -> np.ndarray:
    """The inputs as the source library compares them (``input_cast="float32"``: sklearn, XGBoost)."""
    x = np.asarray(x, dtype=np.float64)
    if node.attrs.get("input_cast") == "float32":
        return x.astype(np.float32).astype(np.float64)
    return x


def float_leaves(node: Node, x: np.ndarray) -> np.ndarray:
    """Leaves (B, T) the float model reaches."""
    e = ensemble(node)
    return _leaves(float_inputs(node, x), e, e.threshold, e.split == "lt")


def fixed_leaves(node: Node, x: Fx, prec: Precision, q: QParams) -> np.ndarray:
    """Leaves (B, T) the fixed-point model reaches: ``x <= t_q`` on a common grid, exactly."""
    xm, tm = _compare_operands(node, x, prec, q)
    return _leaves(xm, ensemble(node), tm, strict=False)


def _compare_operands(
    node: Node, x: Fx, prec: Precision, q: QParams
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and thresholds as integers on a common grid, in the narrowest sufficient dtype."""
    th_t = prec["threshold"]
    frac = max(x.t.frac, th_t.frac)
    bits = max(x.t.width, th_t.width) + abs(x.t.frac - th_t.frac)
    if bits > 62:
        raise ConfigError(
            f"layer {node.name!r}: comparing {x.t} with thresholds {th_t} needs {bits} bits; "
            "use input and threshold types with closer fractional bits"
        )
    dt = np.int16 if bits <= 15 else np.int32 if bits <= 31 else np.int64
    xm = _aligned(x.m, x.t.frac, frac).astype(dt)
    tm = _aligned(q["threshold"], th_t.frac, frac).astype(dt)
    return xm, tm


def _aligned(m: np.ndarray, frac_in: int, frac_out: int) -> np.ndarray:
    return as_exact(np.asarray(m), frac_out - frac_in).astype(np.int64) << (frac_out - frac_in)


# ---------------------------------------------------------------------------
# op functions


def _shape(node: Node, ins: list[Shape]) -> list[Shape]:
    e = ensemble(node)
    if tuple(ins[0]) != (e.n_features,):
        raise ShapeError(
            f"layer {node.name!r}: the trees take {e.n_features} features, the input has shape "
            f"{tuple(ins[0])}; give a flat (batch, {e.n_features}) input"
        )
    return [(e.n_outputs,)]


def _float(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    e = ensemble(node)
    return [_sums(float_inputs(node, xs[0]), e, e.threshold, e.split == "lt", e.value) + e.base]


def quantize_thresholds(thr: np.ndarray, t: FixedType, split: str) -> np.ndarray:
    """Directed rounding onto t's grid (floor for ``<=``, ceil-1 for ``<``), saturated to t."""
    y = np.ldexp(np.asarray(thr, dtype=np.float64), t.frac)
    q = np.floor(y) if split == "le" else np.ceil(y) - 1.0
    q = np.clip(q, float(t.min_int), float(t.max_int))
    return q.astype(np.int64)


def _qparams(node: Node, prec: Precision) -> QParams:
    e = ensemble(node)
    thr = np.where(e.is_leaf, 0.0, e.threshold)
    leaf_vals = np.where(e.is_leaf[:, None], e.value, 0.0)
    return {
        "threshold": quantize_thresholds(thr, prec["threshold"], e.split),
        "leaf": quantize_param(leaf_vals, prec["leaf"], f"{node.name} leaf values"),
        "bias": quantize_param(e.base, prec["bias"], f"{node.name} base score"),
    }


def accum_tables(e: Ensemble, prec: Precision, q: QParams) -> tuple[np.ndarray, np.ndarray]:
    """Leaves (N, L) and bias (K,) cast to the accumulator: what the adder tree sums."""
    acc_t = prec["accum"]
    return requantize(q["leaf"], prec["leaf"].frac, acc_t), requantize(
        q["bias"], prec["bias"].frac, acc_t
    )


def accum_bound(e: Ensemble, leaf_acc: np.ndarray, bias_acc: np.ndarray) -> int:
    """Worst-case |partial sum| of any output over any input (leaves reachable or not)."""
    mags = np.abs(as_exact(leaf_acc))[e.is_leaf]  # (n_leaves, L)
    tree_of = _tree_of_node(e)[e.is_leaf]
    per_tree = np.zeros((e.n_trees, leaf_acc.shape[1]), dtype=object)
    np.maximum.at(per_tree, tree_of, mags.astype(object))
    if leaf_acc.shape[1] == 1:
        per_out = np.zeros(e.n_outputs, dtype=object)
        np.add.at(per_out, np.maximum(e.tree_class, 0), per_tree[:, 0])
    else:
        per_out = per_tree.sum(axis=0)
    return int(np.max(np.abs(bias_acc.astype(object)) + per_out))


def _tree_of_node(e: Ensemble) -> np.ndarray:
    """Tree index of every node (trees own contiguous or linked node sets)."""
    owner = np.full(e.feature.size, -1, dtype=np.int64)
    cur, tree = e.roots.copy(), np.arange(e.n_trees)
    while cur.size:
        owner[cur] = tree
        inner = ~e.is_leaf[cur]
        cur = np.concatenate([e.left[cur[inner]], e.right[cur[inner]]])
        tree = np.concatenate([tree[inner], tree[inner]])
    return owner


def _fixed(node: Node, xs: list[Fx], prec: Precision, q: QParams) -> list[Fx]:
    e = ensemble(node)
    leaf_acc, bias_acc = accum_tables(e, prec, q)
    acc_t = prec["accum"]
    bound = accum_bound(e, leaf_acc, bias_acc)
    single = acc_t.overflow == "WRAP" or bound <= min(-acc_t.min_int, acc_t.max_int)
    if single and bound < 2**52:  # exact float64 sums; one overflow step gives the same bits
        xm, tm = _compare_operands(node, xs[0], prec, q)
        s = _sums(xm, e, tm, False, leaf_acc.astype(np.float64))
        acc = overflow(s.astype(np.int64) + bias_acc, acc_t)
    else:
        acc = _sequential(
            e, fixed_leaves(node, xs[0], prec, q), as_exact(leaf_acc), bias_acc, acc_t
        )
    res = requantize(acc, acc_t.frac, prec["result"])
    return [Fx(res, prec["result"])]


def _sequential(
    e: Ensemble, leaves: np.ndarray, leaf_acc, bias_acc, acc_t: FixedType
) -> np.ndarray:
    """Saturating (or wide) accumulation in tree order."""
    acc = np.broadcast_to(as_exact(bias_acc, 1), (leaves.shape[0], e.n_outputs)).copy()
    for t in range(e.n_trees):
        v = leaf_acc[leaves[:, t]]  # (B, L)
        if v.shape[1] == 1:
            k = int(max(e.tree_class[t], 0))
            acc[:, k] = overflow(acc[:, k] + v[:, 0], acc_t)
        else:
            acc = overflow(acc + v, acc_t)
    return acc


def threshold_type(e: Ensemble, x_t: FixedType) -> FixedType:
    """Thresholds on the input's grid, one extra bit only where a threshold is out of its range."""
    inner = ~e.is_leaf
    if not np.any(inner):
        return FixedType(max(x_t.width, 1), x_t.integer, x_t.signed)
    wide = FixedType(min(x_t.width + 2, 64), x_t.integer + 2, True)
    q = quantize_thresholds(e.threshold[inner], wide, e.split)
    q = np.clip(q, x_t.min_int - 1, x_t.max_int)
    lo, hi = int(q.min()), int(q.max())
    return type_for_int_range(lo, hi, x_t.frac, signed=lo < 0, overflow_mode="SAT")


def bias_type(base: np.ndarray, leaf_t: FixedType) -> FixedType:
    """The base score on the leaves' grid (a finer one would only widen the accumulator)."""
    p = param_type(base, max(leaf_t.width, 2))
    integer = max(p.integer, 1 if p.signed else 0)
    return FixedType(max(integer + leaf_t.frac, 1), integer, p.signed, "RND", "SAT")


def _auto(node: Node, ctx: AutoContext) -> Precision:
    e = ensemble(node)
    opts = ctx.options
    prec = dict(ctx.fixed)
    prec.setdefault("threshold", threshold_type(e, ctx.in_types[0]))
    prec.setdefault("leaf", param_type(e.value[e.is_leaf], opts.weight_bits))
    prec.setdefault("bias", bias_type(e.base, prec["leaf"]))
    if "accum" not in prec:
        leaf_q = quantize_param(
            np.where(e.is_leaf[:, None], e.value, 0.0), prec["leaf"], "leaf values"
        )
        bias_q = quantize_param(e.base, prec["bias"], "base score")
        frac = max(prec["leaf"].frac, prec["bias"].frac)
        leaf_i = as_exact(leaf_q, frac - prec["leaf"].frac) << (frac - prec["leaf"].frac)
        bias_i = as_exact(bias_q, frac - prec["bias"].frac) << (frac - prec["bias"].frac)
        lo, hi = _score_interval(e, leaf_i, bias_i)
        prec["accum"] = exact_type(min(lo, 0), max(hi, 0), frac)
    prec.setdefault("result", prec["accum"])
    return prec


def _score_interval(e: Ensemble, leaf_i: np.ndarray, bias_i: np.ndarray) -> tuple[int, int]:
    """[lo, hi] over all outputs of bias + sum of per-tree leaf extremes."""
    tree_of = _tree_of_node(e)[e.is_leaf]
    vals = leaf_i[e.is_leaf].astype(object)
    lo_t = np.full((e.n_trees, vals.shape[1]), None, dtype=object)
    hi_t = np.full((e.n_trees, vals.shape[1]), None, dtype=object)
    for t, v in zip(tree_of, vals, strict=True):
        lo_t[t] = [a if b is None else min(a, b) for a, b in zip(v, lo_t[t], strict=True)]
        hi_t[t] = [a if b is None else max(a, b) for a, b in zip(v, hi_t[t], strict=True)]
    if vals.shape[1] == 1:
        lo_k = [0] * e.n_outputs
        hi_k = [0] * e.n_outputs
        for t in range(e.n_trees):
            k = int(max(e.tree_class[t], 0))
            lo_k[k] += lo_t[t, 0]
            hi_k[k] += hi_t[t, 0]
    else:
        lo_k = list(lo_t.sum(axis=0))
        hi_k = list(hi_t.sum(axis=0))
    b = [int(v) for v in np.asarray(bias_i).reshape(-1)]
    return min(int(a) + c for a, c in zip(lo_k, b, strict=True)), max(
        int(a) + c for a, c in zip(hi_k, b, strict=True)
    )


def _cost(node: Node, ctx: CostContext) -> Cost:
    e = ensemble(node)
    n_int = int(np.count_nonzero(~e.is_leaf))
    n_leaf = int(np.count_nonzero(e.is_leaf))
    x_t, acc_t, leaf_t = ctx.in_types[0], ctx.prec["accum"], ctx.prec["leaf"]
    cmp_bits = max(x_t.width, ctx.prec["threshold"].width)
    adds = e.n_trees * e.value.shape[1]  # one adder per tree contribution (incl. the base)
    return Cost(
        params=n_int + n_leaf * e.value.shape[1] + e.n_outputs,
        mults=0,
        adds=n_int + adds,  # comparators are subtractors
        bops=n_int * cmp_bits + adds * acc_t.width,
        table_bits=n_leaf * e.value.shape[1] * leaf_t.width,
    )


TREE_ENSEMBLE = Op(
    name="tree_ensemble",
    roles=("threshold", "leaf", "bias", "accum", "result"),
    param_roles=("threshold", "leaf", "bias"),
    infer_shape=_shape,
    run_float=_float,
    run_fixed=_fixed,
    auto_precision=_auto,
    quantize_params=_qparams,
    cost=_cost,
    doc="sum of leaf values per output over a tree ensemble (raw score before the link function)",
)


# ---------------------------------------------------------------------------
# analysis


def decision_agreement(q: QuantizedModel, x: np.ndarray) -> dict[str, float]:
    """How often the fixed model reaches the same leaves as the float model on raw inputs.

    ``q`` is a QuantizedModel whose graph holds ``tree_ensemble`` nodes fed
    by model inputs. Returns, per node, the fraction of (sample, tree) leaf
    decisions that agree, the fraction of samples whose every tree agrees, and
    (for several outputs) the argmax agreement of the scores.
    """
    out: dict[str, float] = {}
    x = np.asarray(x, dtype=np.float64)
    fx = q.run({q.input_names[0]: x}, trace=True)
    flt = q.predict_float(x)
    for node in q.graph.nodes:
        if node.op != "tree_ensemble":
            continue
        src = node.inputs[0]
        if src not in q.graph.inputs:
            continue
        lf = float_leaves(node, x)
        lx = fixed_leaves(node, fx[src], q.precision[node.name], q.qparams[node.name])
        same = lf == lx
        out[f"{node.name}/decision_agreement"] = float(same.mean()) if same.size else 1.0
        out[f"{node.name}/sample_agreement"] = float(same.all(axis=1).mean()) if same.size else 1.0
    y = fx[q.output_names[0]].float()
    f = flt if isinstance(flt, np.ndarray) else flt[q.output_names[0]]
    out["max_abs_score_error"] = float(np.abs(y - f).max()) if y.size else 0.0
    if y.ndim == 2 and y.shape[1] > 1:
        out["argmax_agreement"] = float(np.mean(y.argmax(1) == f.argmax(1)))
    elif y.ndim == 2:
        out["sign_agreement"] = float(np.mean((y[:, 0] > 0) == (f[:, 0] > 0)))
    return out
