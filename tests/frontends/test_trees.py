"""Tree ensembles: importers vs the source libraries, fixed semantics vs a plain reference walk."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import InputError, ModelError, ShapeError
from lightspeed.fixed import FixedType, parse_type, quantize_float, requantize, to_float
from lightspeed.frontends.trees import is_tree_model, load_trees
from lightspeed.ops.trees import (
    decision_agreement,
    ensemble,
    fixed_leaves,
    float_leaves,
    quantize_thresholds,
)

sk = pytest.importorskip("sklearn.ensemble")
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)


def _data(n=1500, f=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y2 = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
    y3 = np.digitize(x[:, 2] + 0.3 * x[:, 3], [-0.5, 0.5])
    yr = 2 * x[:, 0] + np.sin(x[:, 1])
    return x, y2, y3, yr


X, Y2, Y3, YR = _data()
XT = _data(2000, seed=1)[0]


def _sklearn_cases():
    return [
        ("gbc2", lambda: sk.GradientBoostingClassifier(n_estimators=15, max_depth=3).fit(X, Y2),
         lambda m, x: m.decision_function(x)),
        ("gbc3", lambda: sk.GradientBoostingClassifier(n_estimators=8, max_depth=2).fit(X, Y3),
         lambda m, x: m.decision_function(x)),
        ("gbr", lambda: sk.GradientBoostingRegressor(n_estimators=8, max_depth=3).fit(X, YR),
         lambda m, x: m.predict(x)),
        ("rfc", lambda: sk.RandomForestClassifier(n_estimators=6, random_state=0).fit(X, Y3),
         lambda m, x: m.predict_proba(x)),
        ("rfr", lambda: sk.RandomForestRegressor(n_estimators=4, max_depth=5, random_state=0).fit(X, YR),
         lambda m, x: m.predict(x)),
        ("etc", lambda: sk.ExtraTreesClassifier(n_estimators=4, max_depth=4, random_state=0).fit(X, Y2),
         lambda m, x: m.predict_proba(x)),
        ("dtc", lambda: DecisionTreeClassifier(max_depth=4).fit(X, Y3), lambda m, x: m.predict_proba(x)),
        ("hgbc2", lambda: sk.HistGradientBoostingClassifier(max_iter=8).fit(X, Y2),
         lambda m, x: m.decision_function(x)),
        ("hgbc3", lambda: sk.HistGradientBoostingClassifier(max_iter=5, max_depth=3).fit(X, Y3),
         lambda m, x: m.decision_function(x)),
        ("hgbr", lambda: sk.HistGradientBoostingRegressor(max_iter=8).fit(X, YR), lambda m, x: m.predict(x)),
    ]  # fmt: skip


def _xgb_cases():
    xgb = pytest.importorskip("xgboost")
    return [
        ("xgb2", lambda: xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, Y2)),
        ("xgb3", lambda: xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, Y3)),
        ("xgbr", lambda: xgb.XGBRegressor(n_estimators=8, max_depth=4).fit(X, YR)),
        (
            "xgbdart",
            lambda: xgb.XGBRegressor(
                n_estimators=5, max_depth=3, booster="dart", rate_drop=0.2
            ).fit(X, YR),
        ),
    ]


def _lgb_cases():
    lgb = pytest.importorskip("lightgbm")
    return [
        ("lgb2", lambda: lgb.LGBMClassifier(n_estimators=8, num_leaves=8, verbose=-1).fit(X, Y2)),
        ("lgb3", lambda: lgb.LGBMClassifier(n_estimators=5, num_leaves=6, verbose=-1).fit(X, Y3)),
        ("lgbr", lambda: lgb.LGBMRegressor(n_estimators=8, num_leaves=8, verbose=-1).fit(X, YR)),
    ]


# ---------------------------------------------------------------------------
# a plain per-sample reference of the fixed semantics (independent of the vectorised op)


def _reference_fixed(q, x):
    node = q.graph.nodes[0]
    e = ensemble(node)
    prec, qp = q.precision[node.name], q.qparams[node.name]
    x_t = q.input_types["x"]
    xm = quantize_float(x, x_t)
    th_t, acc_t = prec["threshold"], prec["accum"]
    frac = max(x_t.frac, th_t.frac)
    out = np.zeros((len(x), e.n_outputs), dtype=object)
    for b in range(len(x)):
        acc = [int(v) for v in requantize(qp["bias"], prec["bias"].frac, acc_t)]
        for t in range(e.n_trees):
            i = int(e.roots[t])
            while e.feature[i] >= 0:
                xv = int(xm[b, e.feature[i]]) << (frac - x_t.frac)
                tv = int(qp["threshold"][i]) << (frac - th_t.frac)
                i = int(e.left[i]) if xv <= tv else int(e.right[i])
            leaf = requantize(qp["leaf"][i], prec["leaf"].frac, acc_t)
            ks = range(e.n_outputs) if leaf.size > 1 else [int(max(e.tree_class[t], 0))]
            for j, k in enumerate(ks):
                acc[k] = int(
                    requantize(np.array([acc[k] + int(leaf.reshape(-1)[j])]), acc_t.frac, acc_t)[0]
                )
        out[b] = acc
    res = requantize(out.astype(np.int64), acc_t.frac, prec["result"])
    return to_float(res, prec["result"])


def _check_model(model, ref_fn, x=XT, float_tol=1e-12):
    g = load_trees(model)
    q = lightspeed.quantize(g, calibration=X)
    y_float = q.predict_float(x)
    if ref_fn is not None:
        ref = np.asarray(ref_fn(model, x), dtype=np.float64).reshape(len(x), -1)
        np.testing.assert_allclose(y_float, ref, rtol=0, atol=float_tol)
    # fixed decisions == float decisions on the quantized inputs, for every tree
    node = q.graph.nodes[0]
    x_q = to_float(quantize_float(x, q.input_types["x"]), q.input_types["x"])
    fx = q.run({"x": x}, trace=True)
    lf = float_leaves(node, x_q)
    lx = fixed_leaves(node, fx["x"], q.precision[node.name], q.qparams[node.name])
    np.testing.assert_array_equal(lf, lx)
    # bit-exact against the per-sample reference walk
    np.testing.assert_array_equal(q.predict(x[:300]), _reference_fixed(q, x[:300]))
    return q


@pytest.mark.parametrize("case", _sklearn_cases(), ids=lambda c: c[0])
def test_sklearn_float_and_fixed(case):
    _, make, ref = case
    _check_model(make(), ref)


@pytest.mark.parametrize("case", range(4))
def test_xgboost_float_and_fixed(case):
    _name, make = _xgb_cases()[case]
    m = make()
    # XGBoost sums its margins in float32; ours are float64 sums of the same float32 leaves
    _check_model(m, lambda m, x: m.predict(x, output_margin=True), float_tol=2e-5)


@pytest.mark.parametrize("case", range(3))
def test_lightgbm_float_and_fixed(case):
    _name, make = _lgb_cases()[case]
    _check_model(make(), lambda m, x: m.predict(x, raw_score=True))


def test_xgboost_json_file(tmp_path: Path):
    xgb = pytest.importorskip("xgboost")
    m = xgb.XGBClassifier(n_estimators=6, max_depth=3).fit(X, Y3)
    path = tmp_path / "model.json"
    m.save_model(path)
    assert is_tree_model(path)
    g = load_trees(path)
    np.testing.assert_allclose(
        lightspeed.quantize(g, calibration=X).predict_float(XT),
        m.predict(XT, output_margin=True),
        atol=2e-5,
    )


# ---------------------------------------------------------------------------
# the threshold rule, exhaustively on a small type


@pytest.mark.parametrize("split", ["le", "lt"])
def test_threshold_rule_exhaustive(split):
    t = parse_type("ap_fixed<8,3>")
    grid = to_float(np.arange(t.min_int, t.max_int + 1), t)
    rng = np.random.default_rng(3)
    thr = np.concatenate(
        [rng.uniform(-5, 5, 200), grid[::7], [-100.0, 100.0, t.min_value, t.max_value]]
    )
    wide = FixedType(10, 5, True)  # one more integer bit each side: holds "always right"
    tq = to_float(quantize_thresholds(thr, wide.with_modes(overflow="SAT"), split), wide)
    want = grid[:, None] <= thr[None, :] if split == "le" else grid[:, None] < thr[None, :]
    np.testing.assert_array_equal(grid[:, None] <= tq[None, :], want)


def test_out_of_range_thresholds_keep_decisions():
    # thresholds far beyond a narrow input type
    m = DecisionTreeClassifier(max_depth=3).fit(X * 100, Y2)
    g = load_trees(m)
    q = lightspeed.quantize(g, config={"inputs": {"x": "ap_fixed<8,3,RND,SAT>"}}, calibration=X)
    x = XT * 100
    x_q = to_float(quantize_float(x, q.input_types["x"]), q.input_types["x"])
    node = q.graph.nodes[0]
    fx = q.run({"x": x}, trace=True)
    np.testing.assert_array_equal(
        float_leaves(node, x_q),
        fixed_leaves(node, fx["x"], q.precision[node.name], q.qparams[node.name]),
    )


# ---------------------------------------------------------------------------
# precision choices


def test_auto_accumulator_is_exact():
    m = sk.GradientBoostingClassifier(n_estimators=15, max_depth=3).fit(X, Y3)
    q = lightspeed.quantize(load_trees(m), calibration=X)
    p = q.precision["trees"]
    assert p["result"] == p["accum"]
    assert p["accum"].frac >= p["leaf"].frac
    # scores = quantized bias + quantized leaves, exactly
    node = q.graph.nodes[0]
    e = ensemble(node)
    leaves = fixed_leaves(node, q.run({"x": XT}, trace=True)["x"], p, q.qparams["trees"])
    lv = to_float(q.qparams["trees"]["leaf"][:, 0], p["leaf"])[leaves]
    want = to_float(q.qparams["trees"]["bias"], p["bias"]) + np.stack(
        [lv[:, e.tree_class == k].sum(axis=1) for k in range(3)], axis=1
    )
    np.testing.assert_array_equal(q.predict(XT), want)


def test_saturating_narrow_accumulator_matches_reference():
    m = sk.GradientBoostingRegressor(n_estimators=20, max_depth=3).fit(X, YR * 4)
    cfg = {
        "layers": {"trees": {"accum": "ap_fixed<8,3,TRN,SAT>", "result": "ap_fixed<6,3,RND,SAT>"}}
    }
    q = lightspeed.quantize(load_trees(m), calibration=X, config=cfg)
    y = q.predict(XT[:300])
    np.testing.assert_array_equal(y, _reference_fixed(q, XT[:300]))
    assert np.max(np.abs(y)) >= 3.5  # the narrow accumulator really saturates here


def test_uniform_type_like_conifer():
    m = sk.GradientBoostingClassifier(n_estimators=10, max_depth=3).fit(X, Y2)
    q = lightspeed.quantize(load_trees(m), precision="ap_fixed<18,8>", calibration=X)
    assert all(str(t) == "ap_fixed<18,8>" for t in q.precision["trees"].values())
    np.testing.assert_array_equal(q.predict(XT[:200]), _reference_fixed(q, XT[:200]))


def test_deep_trees_take_the_node_walk():
    m = sk.RandomForestClassifier(
        n_estimators=3, max_depth=None, min_samples_leaf=1, random_state=0
    )
    xx, _, y3, _ = _data(6000, seed=5)
    m.fit(xx, (y3 + (xx[:, 5] > 0)) % 3)
    g = load_trees(m)
    from lightspeed.ops.trees import _HEAP_MAX_DEPTH, tree_depth

    assert tree_depth(ensemble(g.nodes[0])) > _HEAP_MAX_DEPTH
    _check_model(m, lambda m, x: m.predict_proba(x))


def test_decision_agreement_report():
    m = sk.GradientBoostingClassifier(n_estimators=10, max_depth=3).fit(X, Y3)
    q = lightspeed.quantize(load_trees(m), calibration=X)
    rep = decision_agreement(q, XT)
    assert 0.97 <= rep["trees/decision_agreement"] <= 1.0
    assert rep["argmax_agreement"] >= 0.97
    # inputs already on the input grid: every decision agrees
    x_q = to_float(quantize_float(XT, q.input_types["x"]), q.input_types["x"])
    exact = decision_agreement(q, x_q)
    assert exact["trees/decision_agreement"] == 1.0


# ---------------------------------------------------------------------------
# bad input


def test_features_beyond_declared_width_refused():
    m = sk.GradientBoostingClassifier(n_estimators=3, max_depth=3).fit(X, Y2)
    used = int(max(t.tree_.feature.max() for t in m.estimators_[:, 0]))
    with pytest.raises(ModelError, match="declared input width"):
        load_trees(m, n_features=used)
    g = load_trees(m, n_features=used + 1)
    assert g.inputs["x"] == (used + 1,)


def test_wrong_input_shape_refused():
    g = load_trees(DecisionTreeClassifier(max_depth=2).fit(X, Y2))
    g.inputs["x"] = (4,)
    from lightspeed.ir import infer_shapes

    with pytest.raises((ShapeError, ModelError)):
        infer_shapes(g)


def test_hist_categorical_refused():
    xc = X.copy()
    xc[:, 0] = np.abs(np.round(xc[:, 0] * 2))
    m = sk.HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(
        xc, (xc[:, 0] > 1).astype(int)
    )
    with pytest.raises(ModelError, match="categorical"):
        load_trees(m)


def test_xgboost_categorical_and_missing_refused():
    xgb = pytest.importorskip("xgboost")
    import pandas as pd

    df = pd.DataFrame({"a": pd.Categorical(np.where(X[:, 0] > 0, "u", "v")), "b": X[:, 1]})
    m = xgb.XGBClassifier(
        n_estimators=3, max_depth=2, enable_categorical=True, tree_method="hist"
    ).fit(df, Y2)
    with pytest.raises(ModelError, match="categorical"):
        load_trees(m)
    m2 = xgb.XGBClassifier(n_estimators=2, max_depth=2, missing=0.0).fit(X, Y2)
    with pytest.raises(ModelError, match="missing"):
        load_trees(m2)


def test_lightgbm_categorical_refused():
    lgb = pytest.importorskip("lightgbm")
    xc = X.copy()
    xc[:, 0] = np.abs(np.round(xc[:, 0] * 2))
    y = (xc[:, 0] == 1).astype(int)
    m = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, min_child_samples=5, verbose=-1)
    m.fit(xc, y, categorical_feature=[0])
    with pytest.raises(ModelError, match="categorical"):
        load_trees(m)


def test_lightgbm_zero_as_missing_refused():
    lgb = pytest.importorskip("lightgbm")
    xz = X.copy()
    xz[::3, 0] = 0.0
    m = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, zero_as_missing=True, verbose=-1).fit(
        xz, Y2
    )
    with pytest.raises(ModelError, match="zero"):
        load_trees(m)


def test_nan_inputs_refused():
    xn = X.copy()
    xn[::5, 1] = np.nan
    m = sk.HistGradientBoostingClassifier(max_iter=3).fit(xn, Y2)  # learns missing-value directions
    q = lightspeed.quantize(load_trees(m), calibration=X)
    with pytest.raises(InputError, match="NaN"):
        q.predict(xn[:10])


def test_unsupported_object_refused():
    with pytest.raises(ModelError, match="cannot import trees"):
        load_trees(object())
    assert not is_tree_model(object())


# ---------------------------------------------------------------------------
# artifact and serving


def test_compiled_roundtrip_and_serving_backend(tmp_path: Path):
    m = sk.GradientBoostingClassifier(n_estimators=10, max_depth=3).fit(X, Y3)
    q = lightspeed.quantize(load_trees(m), calibration=X)
    out = q.save(tmp_path / "bdt")
    q2 = lightspeed.load_compiled(out)
    np.testing.assert_array_equal(q2.predict(XT), q.predict(XT))
    from lightspeed.serve.backends import LightspeedBackend

    be = LightspeedBackend(Path(out))
    ins, outs = be.io()
    assert [s.name for s in ins] == ["x"] and [s.name for s in outs] == ["score"]
    res = be.execute({"x": XT[:64]}, ["score"])
    np.testing.assert_array_equal(res["score"], q.predict(XT[:64]))


def test_cost_counts_comparators_and_leaves():
    m = sk.GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(X, Y2)
    q = lightspeed.quantize(load_trees(m), calibration=X)
    c = q.costs()["trees"]
    e = ensemble(q.graph.nodes[0])
    n_int = int(np.sum(e.feature >= 0))
    assert c.mults == 0
    assert c.adds == n_int + e.n_trees
    assert c.table_bits == int(np.sum(e.feature < 0)) * q.precision["trees"]["leaf"].width


def test_served_over_http_by_the_lightspeed_backend(tmp_path: Path):
    pytest.importorskip("aiohttp")
    pytest.importorskip("grpc")
    httpclient = pytest.importorskip("tritonclient.http")
    from lightspeed.serve.repo_add import EntryOptions, add_model
    from lightspeed.serve.server import BackgroundServer, ServerConfig

    m = sk.GradientBoostingClassifier(n_estimators=6, max_depth=3).fit(X, Y3)
    q = lightspeed.quantize(load_trees(m), calibration=X)
    compiled = q.save(tmp_path / "bdt")
    repo = tmp_path / "repo"
    add_model(compiled, repo, "bdt", EntryOptions(max_batch_size=64))
    cfg = ServerConfig(repository=repo, grpc_port=0, http_port=0, metrics_port=0)
    with BackgroundServer(cfg) as srv:
        c = httpclient.InferenceServerClient(srv.http_url)
        inp = httpclient.InferInput("x", [32, 6], "FP32")
        inp.set_data_from_numpy(XT[:32])
        res = c.infer("bdt", [inp])
        np.testing.assert_array_equal(res.as_numpy("score"), q.predict(XT[:32]))
        c.close()


def test_cli_compiles_an_xgboost_json_model(tmp_path: Path):
    xgb = pytest.importorskip("xgboost")
    from lightspeed.cli import main

    m = xgb.XGBClassifier(n_estimators=4, max_depth=3).fit(X, Y3)
    m.save_model(tmp_path / "bdt.json")
    np.save(tmp_path / "cal.npy", X)
    out = tmp_path / "compiled"
    rc = main(["compile", str(tmp_path / "bdt.json"), "--calibration", str(tmp_path / "cal.npy"),
               "-o", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    q = lightspeed.load_compiled(out)
    assert q.graph.nodes[0].op == "tree_ensemble"
    np.testing.assert_allclose(q.predict_float(XT), m.predict(XT, output_margin=True), atol=2e-5)
