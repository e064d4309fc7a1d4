"""Tree ensembles in firmware: netlist interpreter and Verilator RTL vs the emulator, bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import lightspeed
from lightspeed import firmware
from lightspeed.errors import ToolMissingError
from lightspeed.firmware.netlist import evaluate
from lightspeed.firmware.verilog import build_design
from lightspeed.fixed import quantize_float
from lightspeed.frontends.trees import load_trees

sk = pytest.importorskip("sklearn.ensemble")
warnings.filterwarnings("ignore", category=UserWarning)

rng = np.random.default_rng(0)
X = rng.normal(size=(1500, 6)).astype(np.float32)
Y2 = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
Y3 = np.digitize(X[:, 2] + 0.3 * X[:, 3], [-0.5, 0.5])
YR = 2 * X[:, 0] + np.sin(X[:, 1])
XT = np.random.default_rng(1).normal(size=(3000, 6)).astype(np.float32) * 1.3  # some saturate


def _needs_verilator():
    try:
        from lightspeed.firmware.tools import find_verilator

        find_verilator()
    except ToolMissingError as exc:
        pytest.skip(f"Verilator not available: {exc}")


def _netlist_exact(q, x=XT):
    d = build_design(q)
    port_in, port_out = d.inputs["x"]["port"], d.outputs["score"]["port"]
    got = evaluate(d.nl, {port_in: quantize_float(x, q.input_types["x"])})[port_out]
    np.testing.assert_array_equal(got, q.run({"x": x})["score"].m)
    return d


def _models():
    out = {
        "gbc3": lambda: sk.GradientBoostingClassifier(n_estimators=6, max_depth=3).fit(X, Y3),
        "gbr": lambda: sk.GradientBoostingRegressor(n_estimators=6, max_depth=4).fit(X, YR),
        "rfc": lambda: sk.RandomForestClassifier(n_estimators=4, max_depth=5, random_state=0).fit(
            X, Y3
        ),
        "hgb": lambda: sk.HistGradientBoostingClassifier(max_iter=4, max_leaf_nodes=8).fit(X, Y2),
    }
    try:
        import xgboost as xgb

        out["xgb3"] = lambda: xgb.XGBClassifier(n_estimators=4, max_depth=3).fit(X, Y3)
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("name", sorted(_models()))
def test_netlist_matches_emulator(name):
    m = _models()[name]()
    _netlist_exact(lightspeed.quantize(load_trees(m), calibration=X))


def test_netlist_uniform_and_saturating_types():
    m = sk.GradientBoostingRegressor(n_estimators=12, max_depth=3).fit(X, YR * 4)
    q = lightspeed.quantize(load_trees(m), precision="ap_fixed<12,4>", calibration=X)
    _netlist_exact(q)
    cfg = {
        "layers": {"trees": {"accum": "ap_fixed<8,3,TRN,SAT>", "result": "ap_fixed<6,3,RND,SAT>"}}
    }
    q2 = lightspeed.quantize(load_trees(m), calibration=X, config=cfg)
    d = _netlist_exact(q2)
    assert d.latency >= 1


def test_out_of_range_thresholds_become_constant_branches():
    m = sk.GradientBoostingClassifier(n_estimators=4, max_depth=3).fit(X * 50, Y2)
    q = lightspeed.quantize(
        load_trees(m), config={"inputs": {"x": "ap_fixed<8,4,RND,SAT>"}}, calibration=X
    )
    d = _netlist_exact(q, XT * 50)
    wide = lightspeed.quantize(
        load_trees(m), config={"inputs": {"x": "ap_fixed<16,10,RND,SAT>"}}, calibration=X
    )
    d_wide = build_design(wide)
    # the narrow input saturates below many thresholds: fewer comparators survive
    n_cmp = sum(1 for n in d.nl.nets if n.op == "add" and n.attrs.get("sub"))
    n_cmp_wide = sum(1 for n in d_wide.nl.nets if n.op == "add" and n.attrs.get("sub"))
    assert n_cmp < n_cmp_wide


def test_comparators_are_shared_between_trees():
    m = sk.RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(X, Y3)
    q = lightspeed.quantize(load_trees(m), calibration=X)
    d = build_design(q)
    from lightspeed.ops.trees import ensemble

    e = ensemble(q.graph.nodes[0])
    inner = e.feature >= 0
    distinct = len(
        set(
            zip(
                e.feature[inner].tolist(),
                q.qparams["trees"]["threshold"][inner].tolist(),
                strict=True,
            )
        )
    )
    n_cmp = sum(1 for n in d.nl.nets if n.op == "add" and n.attrs.get("sub"))
    assert n_cmp <= distinct


def test_verilator_bit_exact(tmp_path: Path):
    _needs_verilator()
    m = sk.GradientBoostingClassifier(n_estimators=8, max_depth=3).fit(X, Y3)
    q = lightspeed.quantize(load_trees(m), calibration=X)
    fw = firmware.generate(q, tmp_path / "fw")
    r = firmware.check(fw, XT, q=q)
    assert r["exact"], r["mismatches"]
    assert r["vectors"] == len(XT)
    assert r["latency"] == fw.latency
    assert r["ii"] == 1.0


@pytest.mark.slow
def test_verilator_bit_exact_xgboost_vector_leaves_and_saturation(tmp_path: Path):
    _needs_verilator()
    xgb = pytest.importorskip("xgboost")
    for i, (m, cfg) in enumerate([
        (xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, Y3), None),
        (sk.RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(X, Y3), None),
        (sk.GradientBoostingRegressor(n_estimators=10, max_depth=3).fit(X, YR * 4),
         {"layers": {"trees": {"accum": "ap_fixed<8,3,TRN,SAT>", "result": "ap_fixed<6,3,RND,SAT>"}}}),
    ]):  # fmt: skip
        q = lightspeed.quantize(load_trees(m), calibration=X, config=cfg)
        r = firmware.check(firmware.generate(q, tmp_path / f"fw{i}"), XT[:1000], q=q)
        assert r["exact"], (i, r["mismatches"])
