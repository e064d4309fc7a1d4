"""Tree-ensemble importers: scikit-learn, XGBoost (JSON model), LightGBM -> one ``tree_ensemble`` node.

``load_trees(model, n_features=None)`` returns a float graph ``x (n_features,)
-> trees -> score (n_outputs,)`` whose float semantics are the model's raw
score before its link function (see :mod:`lightspeed.ops.trees`):

=====================================  ====================================  ==========
model                                  score                                 split
=====================================  ====================================  ==========
sklearn GradientBoosting{Classifier,   ``decision_function`` / ``_raw_predict``  ``<=``
Regressor}, HistGradientBoosting*
sklearn RandomForest*, ExtraTrees*,    ``predict_proba`` (classifier) /       ``<=``
DecisionTree*                          ``predict`` (regressor)
XGBoost Booster / XGB* / JSON model    ``predict(output_margin=True)``        ``<``
LightGBM Booster / LGBM*               ``predict(raw_score=True)``            ``<=``
=====================================  ====================================  ==========

scikit-learn and XGBoost compare float32 copies of the inputs; the node then
carries ``input_cast="float32"`` so the float model does the same. Refused
with a ModelError naming the reason: categorical splits, LightGBM zero-as-
missing splits and linear trees, XGBoost vector leaves and gblinear, multi-
output sklearn forests, and trees that use features beyond ``n_features``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import ModelError
from lightspeed.ir import Graph, infer_shapes
from lightspeed.ir.graph import Node

INPUT, OUTPUT, NODE = "x", "score", "trees"


def is_tree_model(obj: Any) -> bool:
    """True for the tree models :func:`load_trees` understands (checked without importing them)."""
    if isinstance(obj, (str, Path)):
        return _is_xgboost_json(Path(obj))
    mod = type(obj).__module__
    name = type(obj).__name__
    if mod.startswith("sklearn."):
        return name in _SKLEARN
    return mod.startswith(("xgboost", "lightgbm")) and name in (
        "Booster", "XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor",
        "LGBMClassifier", "LGBMRegressor",
    )  # fmt: skip


def load_trees(model: Any, n_features: int | None = None, name: str | None = None) -> Graph:
    """Import a trained tree ensemble as a float IR graph with one ``tree_ensemble`` node.

    ``n_features`` declares the input width (default: the model's own); a
    model whose trees use a feature at or beyond it is refused.
    """
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"tree model file {str(path)!r} does not exist; check the path")
        if not _is_xgboost_json(path):
            raise ModelError(
                f"{str(path)!r} is not an XGBoost JSON model; save one with booster.save_model('m.json') "
                "or pass the trained model object"
            )
        spec = _from_xgboost_json(json.loads(path.read_text()), missing=None)
    else:
        mod = type(model).__module__
        if mod.startswith("sklearn."):
            spec = _from_sklearn(model)
        elif mod.startswith("xgboost"):
            spec = _from_xgboost(model)
        elif mod.startswith("lightgbm"):
            spec = _from_lightgbm(model)
        else:
            raise ModelError(
                f"cannot import trees from a {type(model).__name__}; supported: scikit-learn "
                "GradientBoosting/HistGradientBoosting/RandomForest/ExtraTrees/DecisionTree, XGBoost, LightGBM"
            )
    return _graph(spec, n_features, name)


# ---------------------------------------------------------------------------
# the common form every converter produces


class _Spec:
    """Trees as lists, appended one by one; ``finish`` turns them into node params."""

    def __init__(self, n_features: int, n_outputs: int, split: str, link: str, source: str,
                 leaf_width: int = 1, input_cast: str | None = None) -> None:  # fmt: skip
        self.n_features, self.n_outputs, self.split = n_features, n_outputs, split
        self.link, self.source, self.leaf_width, self.input_cast = (
            link,
            source,
            leaf_width,
            input_cast,
        )
        self.feature: list[np.ndarray] = []
        self.threshold: list[np.ndarray] = []
        self.left: list[np.ndarray] = []
        self.right: list[np.ndarray] = []
        self.value: list[np.ndarray] = []
        self.roots: list[int] = []
        self.tree_class: list[int] = []
        self.base = np.zeros(n_outputs)
        self._n = 0

    def add_tree(self, feature, threshold, left, right, value, cls: int) -> None:
        """One tree in local node numbering (children -1 at leaves), root at node 0."""
        feature = np.asarray(feature, dtype=np.int64)
        leaf = np.asarray(left) < 0
        feature = np.where(leaf, -1, feature)
        off = self._n
        self.feature.append(feature)
        self.threshold.append(np.where(leaf, 0.0, np.asarray(threshold, dtype=np.float64)))
        self.left.append(np.where(leaf, -1, np.asarray(left, dtype=np.int64) + off))
        self.right.append(np.where(leaf, -1, np.asarray(right, dtype=np.int64) + off))
        v = np.asarray(value, dtype=np.float64).reshape(feature.size, self.leaf_width)
        self.value.append(np.where(leaf[:, None], v, 0.0))
        self.roots.append(off)
        self.tree_class.append(cls)
        self._n += feature.size

    def params(self) -> dict[str, np.ndarray]:
        if not self.roots:
            raise ModelError(f"{self.source}: the model has no trees; train it first")
        return {
            "feature": np.concatenate(self.feature),
            "threshold": np.concatenate(self.threshold),
            "left": np.concatenate(self.left),
            "right": np.concatenate(self.right),
            "value": np.concatenate(self.value),
            "roots": np.asarray(self.roots, dtype=np.int64),
            "tree_class": np.asarray(self.tree_class, dtype=np.int64),
            "base": np.asarray(self.base, dtype=np.float64).reshape(self.n_outputs),
        }


def _graph(spec: _Spec, n_features: int | None, name: str | None) -> Graph:
    params = spec.params()
    used = params["feature"][params["feature"] >= 0]
    width = spec.n_features if n_features is None else int(n_features)
    if used.size and int(used.max()) >= width:
        raise ModelError(
            f"{spec.source}: the trees use feature {int(used.max())} but the declared input width is "
            f"{width}; declare n_features >= {int(used.max()) + 1} or retrain on the first {width} features"
        )
    attrs: dict[str, Any] = {
        "n_features": width,
        "n_outputs": spec.n_outputs,
        "split": spec.split,
        "link": spec.link,
        "source": spec.source,
    }
    if spec.input_cast:
        attrs["input_cast"] = spec.input_cast
    node = Node(NODE, "tree_ensemble", [INPUT], [OUTPUT], attrs, params)
    g = Graph(name or spec.source.split(".")[-1], {INPUT: (width,)}, [OUTPUT], [node])
    return infer_shapes(g)


# ---------------------------------------------------------------------------
# scikit-learn

_SKLEARN = {
    "GradientBoostingClassifier", "GradientBoostingRegressor",
    "HistGradientBoostingClassifier", "HistGradientBoostingRegressor",
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
    "DecisionTreeClassifier", "DecisionTreeRegressor",
}  # fmt: skip


def _from_sklearn(model: Any) -> _Spec:
    kind = type(model).__name__
    if kind not in _SKLEARN:
        raise ModelError(
            f"scikit-learn {kind} is not a supported tree model; supported: {sorted(_SKLEARN)}"
        )
    if not hasattr(model, "n_features_in_"):
        raise ModelError(f"the {kind} is not fitted; call fit() before importing it")
    source = f"sklearn.{kind}"
    if kind.startswith("Hist"):
        return _from_sklearn_hist(model, source)
    if kind.startswith("GradientBoosting"):
        return _from_sklearn_gb(model, source)
    return _from_sklearn_forest(model, source)


def _sk_tree(tree: Any) -> tuple[np.ndarray, ...]:
    t = tree.tree_
    return t.feature, t.threshold, t.children_left, t.children_right, t.value


def _from_sklearn_gb(model: Any, source: str) -> _Spec:
    k = int(model.estimators_.shape[1])
    classifier = hasattr(model, "classes_")
    link = "identity" if not classifier else ("logistic" if k == 1 else "softmax")
    spec = _Spec(int(model.n_features_in_), k, "le", link, source, input_cast="float32")
    lr = float(model.learning_rate)
    for stage in model.estimators_:
        for cls, est in enumerate(stage):
            f, th, lc, rc, v = _sk_tree(est)
            spec.add_tree(f, th, lc, rc, v[:, 0, 0] * lr, cls)
    # the init estimator's raw prediction does not depend on x for the built-in inits
    if isinstance(model.init_, str) and model.init_ == "zero":
        spec.base = np.zeros(k)
        return spec
    if not type(model.init_).__module__.startswith("sklearn.dummy"):
        raise ModelError(
            f"{source}: a custom init estimator ({type(model.init_).__name__}) depends on x; "
            "use init=None or 'zero'"
        )
    zero = np.zeros((1, int(model.n_features_in_)))
    spec.base = np.asarray(model._raw_predict_init(zero), dtype=np.float64).reshape(k)
    return spec


def _from_sklearn_forest(model: Any, source: str) -> _Spec:
    trees = list(model.estimators_) if hasattr(model, "estimators_") else [model]
    if int(getattr(model, "n_outputs_", 1)) != 1:
        raise ModelError(
            f"{source}: multi-output trees are not supported; fit one model per target"
        )
    classifier = hasattr(model, "classes_")
    n = len(trees)
    if classifier:
        k = int(model.n_classes_)
        spec = _Spec(int(model.n_features_in_), k, "le", "identity", source, leaf_width=k,
                     input_cast="float32")  # fmt: skip
        for est in trees:
            f, th, lc, rc, v = _sk_tree(est)
            p = v[:, 0, :] / np.maximum(v[:, 0, :].sum(axis=1, keepdims=True), 1e-300)
            spec.add_tree(f, th, lc, rc, p / n, -1)
    else:
        spec = _Spec(int(model.n_features_in_), 1, "le", "identity", source, input_cast="float32")
        for est in trees:
            f, th, lc, rc, v = _sk_tree(est)
            spec.add_tree(f, th, lc, rc, v[:, 0, 0] / n, 0)
    return spec


def _from_sklearn_hist(model: Any, source: str) -> _Spec:
    preds = model._predictors
    k = len(preds[0])
    classifier = hasattr(model, "classes_")
    link = "identity" if not classifier else ("logistic" if k == 1 else "softmax")
    spec = _Spec(int(model.n_features_in_), k, "le", link, source)
    for stage in preds:
        for cls, pred in enumerate(stage):
            nd = pred.nodes
            if np.any(nd["is_categorical"][nd["is_leaf"] == 0]):
                raise ModelError(
                    f"{source}: categorical splits are not supported in fixed point; one-hot or "
                    "ordinal-encode the categories and retrain with categorical_features=None"
                )
            leaf = nd["is_leaf"].astype(bool)
            left = np.where(leaf, -1, nd["left"].astype(np.int64))
            spec.add_tree(
                nd["feature_idx"], nd["num_threshold"], left, nd["right"], nd["value"], cls
            )
    spec.base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    if spec.base.size == 1 and k > 1:
        spec.base = np.repeat(spec.base, k)
    return spec


# ---------------------------------------------------------------------------
# XGBoost


def _from_xgboost(model: Any) -> _Spec:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    missing = getattr(model, "missing", None)
    raw = booster.save_raw(raw_format="json")
    return _from_xgboost_json(json.loads(bytes(raw).decode()), missing)


def _is_xgboost_json(path: Path) -> bool:
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        head = path.read_text()[:4096]
    except OSError:
        return False
    return '"learner"' in head


_LOGIT = ("binary:logistic", "reg:logistic", "binary:logitraw_prob")
_LOG = ("count:poisson", "reg:gamma", "reg:tweedie", "survival:cox", "survival:aft")


def _from_xgboost_json(d: dict[str, Any], missing: Any) -> _Spec:
    try:
        learner = d["learner"]
        gb = learner["gradient_booster"]
        mparam = learner["learner_model_param"]
        objective = learner["objective"]["name"]
    except (KeyError, TypeError):
        raise ModelError("not an XGBoost JSON model (no learner/gradient_booster)") from None
    if missing is not None and not (isinstance(missing, float) and np.isnan(missing)):
        raise ModelError(
            f"XGBoost model uses missing={missing!r}: inputs equal to it take the learned default "
            "branch, which fixed point cannot express; retrain with missing=np.nan"
        )
    booster = gb["name"]
    if booster == "gbtree":
        model, weights = gb["model"], None
    elif booster == "dart":
        model, weights = gb["gbtree"]["model"], gb.get("weight_drop")
    else:
        raise ModelError(
            f"XGBoost booster {booster!r} is not a tree model; use booster='gbtree' or 'dart'"
        )
    n_class = int(mparam.get("num_class", "0"))
    k = max(n_class, 1) * max(int(mparam.get("num_target", "1")), 1)
    link = "softmax" if n_class > 1 else ("logistic" if objective in _LOGIT else "identity")
    if objective in _LOG:
        link = "exp"
    spec = _Spec(
        int(mparam["num_feature"]), k, "lt", link, f"xgboost.{objective}", input_cast="float32"
    )
    info = model["tree_info"]
    for i, tree in enumerate(model["trees"]):
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise ModelError(
                "XGBoost vector-leaf trees (multi_strategy='multi_output_tree') are not supported"
            )
        if any(int(s) != 0 for s in tree.get("split_type", [])):
            raise ModelError(
                "XGBoost categorical splits are not supported in fixed point; one-hot encode the "
                "categories and retrain with enable_categorical=False"
            )
        left = np.asarray(tree["left_children"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float32).astype(np.float64)
        val = cond if weights is None else cond * float(np.float32(weights[i]))
        spec.add_tree(tree["split_indices"], cond, left, tree["right_children"], val, int(info[i]))
    base = np.asarray(
        [float(v) for v in str(mparam.get("base_score", "0")).strip("[]").split(",")],
        dtype=np.float64,
    )
    base = base.astype(np.float32).astype(np.float64)  # XGBoost keeps it in float32
    if objective in _LOGIT:
        with np.errstate(divide="ignore"):
            base = np.log(base) - np.log1p(-base)
    elif objective in _LOG:
        base = np.log(base)
    spec.base = np.broadcast_to(base, (k,)).astype(np.float64) if base.size in (1, k) else base
    return spec


# ---------------------------------------------------------------------------
# LightGBM


def _from_lightgbm(model: Any) -> _Spec:
    booster = model.booster_ if hasattr(model, "booster_") else model
    d = booster.dump_model()
    k = int(d.get("num_tree_per_iteration", 1))
    n_class = int(d.get("num_class", 1))
    objective = str(d.get("objective", "")).split(" ")[0]
    if d.get("average_output"):
        raise ModelError(
            "LightGBM random-forest mode (average_output) is not supported; use boosting='gbdt'"
        )
    link = (
        "softmax"
        if n_class > 1
        else ("logistic" if objective in ("binary", "cross_entropy") else "identity")
    )
    spec = _Spec(int(d["max_feature_idx"]) + 1, k, "le", link, f"lightgbm.{objective or 'model'}")
    for i, info in enumerate(d["tree_info"]):
        nodes: list[dict[str, Any]] = []
        _lgb_flatten(info["tree_structure"], nodes)
        feat = [n.get("split_feature", -1) for n in nodes]
        thr = [float(n.get("threshold", 0.0)) for n in nodes]
        lc = [n.get("_left", -1) for n in nodes]
        rc = [n.get("_right", -1) for n in nodes]
        val = [float(n.get("leaf_value", 0.0)) for n in nodes]
        spec.add_tree(feat, thr, lc, rc, val, i % k)
    return spec


def _lgb_flatten(node: dict[str, Any], out: list[dict[str, Any]]) -> int:
    idx = len(out)
    out.append(node)
    if "leaf_coeff" in node or "leaf_features" in node:
        raise ModelError("LightGBM linear trees are not supported; retrain with linear_tree=False")
    if "split_index" not in node:
        return idx
    if node.get("decision_type", "<=") != "<=":
        raise ModelError(
            "LightGBM categorical splits are not supported in fixed point; encode the categories "
            "numerically and retrain without categorical_feature"
        )
    if node.get("missing_type") == "Zero":
        raise ModelError(
            "LightGBM zero-as-missing splits send x == 0 down the default branch, which lightspeed "
            "does not model; retrain with zero_as_missing=False"
        )
    node["_left"] = _lgb_flatten(node["left_child"], out)
    node["_right"] = _lgb_flatten(node["right_child"], out)
    return idx
