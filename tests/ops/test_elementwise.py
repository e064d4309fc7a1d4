"""sub, max, min, mean: fixed contract, float (vs onnxruntime), auto precision, QONNX, RTL, HLS."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

from tests.firmware.check import skip_without as _skip_without  # noqa: E402
from tests.frontends.helpers import check_against_ort, make_model, rnd  # noqa: E402

# -- (1) the fixed contract against a literal reference


def ref_cast(v: Fraction, width: int, integer: int, signed: bool, rnd_: bool, sat: bool) -> int:
    """Integer of ``v`` in ap_fixed<width, integer> with RND (half up) or TRN, SAT or WRAP."""
    scaled = v * 2 ** (width - integer)
    m = (scaled + Fraction(1, 2)).__floor__() if rnd_ else scaled.__floor__()
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    if sat:
        return min(max(m, lo), hi)
    m = (m - lo) % 2**width + lo
    return m


TA = FixedType(8, 3, True)  # values k / 32
TB = FixedType(6, 4, False)  # values k / 4, unsigned
RESULTS = [FixedType(7, 3, True, "RND", "SAT"), FixedType(6, 2, True, "TRN", "WRAP")]


def _all_pairs():
    a = np.arange(TA.min_int, TA.max_int + 1, 3)
    b = np.arange(TB.min_int, TB.max_int + 1)
    pa, pb = zip(*itertools.product(a.tolist(), b.tolist()), strict=True)
    return np.array(pa, dtype=np.int64), np.array(pb, dtype=np.int64)


@pytest.mark.parametrize("res", RESULTS, ids=str)
@pytest.mark.parametrize("op", ["sub", "max", "min"])
def test_fixed_contract_matches_literal_reference(op, res):
    ma, mb = _all_pairs()
    node = Node("n", op, ["a", "b"], ["y"])
    (y,) = get_op(op).run_fixed(node, [Fx(ma, TA), Fx(mb, TB)], {"result": res}, {})
    assert y.t == res
    sat = res.overflow == "SAT"
    for i in range(len(ma)):
        va, vb = Fraction(int(ma[i]), 32), Fraction(int(mb[i]), 4)
        v = {"sub": va - vb, "max": max(va, vb), "min": min(va, vb)}[op]
        want = ref_cast(v, res.width, res.integer, res.signed, res.rounding == "RND", sat)
        assert int(y.m[i]) == want, (op, va, vb)


def test_three_way_max_min_broadcast():
    ta, tb, tc = FixedType(8, 3, True), FixedType(5, 5, True), FixedType(9, 1, True)
    rng = np.random.default_rng(0)
    a = rng.integers(ta.min_int, ta.max_int + 1, (50, 4))
    b = rng.integers(tb.min_int, tb.max_int + 1, (50, 1))
    c = rng.integers(tc.min_int, tc.max_int + 1, (1, 4))
    res = FixedType(16, 6, True, "TRN", "SAT")
    for op, pick in (("max", max), ("min", min)):
        node = Node("n", op, ["a", "b", "c"], ["y"])
        ins = [Fx(a, ta), Fx(b, tb), Fx(c, tc)]
        (y,) = get_op(op).run_fixed(node, ins, {"result": res}, {})
        assert y.m.shape == (50, 4)
        for i in range(50):
            for j in range(4):
                v = pick(
                    Fraction(int(a[i, j]), 32), Fraction(int(b[i, 0])), Fraction(int(c[0, j]), 256)
                )
                assert int(y.m[i, j]) == ref_cast(v, 16, 6, True, False, True)


def test_exact_types_cover_the_range():
    from lightspeed.ops.base import TrainedContext

    sub = get_op("sub").trained_precision(
        Node("n", "sub", ["a", "b"], ["y"]), TrainedContext([TA, TB], {})
    )
    r = sub["result"]  # [-4 - 15.75, 3.96875 - 0] at 1/32
    assert r.frac == 5 and r.min_value <= -19.75 and r.max_value >= 3.96875 and r.signed
    assert r.width == 11  # -632..127 needs 11 bits
    mx = get_op("max").auto_precision(Node("n", "max", ["a", "b"], ["y"]), _auto_ctx([TA, TB]))
    r = mx["result"]  # covers -4 .. 15.75 at 1/32: ap_fixed<10,5>
    assert (r.width, r.integer, r.signed) == (10, 5, True)


def _auto_ctx(types):
    from lightspeed.ops.base import AutoContext, AutoOptions

    return AutoContext(types, [(0.0, 1.0)], {}, AutoOptions(), {})


@pytest.mark.parametrize("res", RESULTS, ids=str)
@pytest.mark.parametrize("n", [2, 3])
def test_mean_contract_matches_literal_reference(n, res):
    ma, mb = _all_pairs()
    ins = [Fx(ma, TA), Fx(mb, TB)] + ([Fx(mb[::-1].copy(), TB)] if n == 3 else [])
    node = Node("n", "mean", [f"x{i}" for i in range(n)], ["y"], {"n": n})
    k_t = FixedType(11, 0, False, "RND", "SAT")  # 1/3 -> 683/2048 (1/2 exactly)
    prec = {"param": k_t, "result": res}
    impl = get_op("mean")
    q = impl.quantize_params(node, prec)
    assert int(q["k"]) == {2: 1024, 3: 683}[n]
    (y,) = impl.run_fixed(node, ins, prec, q)
    sat = res.overflow == "SAT"
    for i in range(len(ma)):
        total = Fraction(int(ma[i]), 32) + Fraction(int(mb[i]), 4)
        if n == 3:
            total += Fraction(int(mb[::-1][i]), 4)
        v = total * Fraction(int(q["k"]), 2048)
        want = ref_cast(v, res.width, res.integer, res.signed, res.rounding == "RND", sat)
        assert int(y.m[i]) == want, (n, i)


def test_mean_trained_types_exactly():
    g = infer_shapes(
        Graph("t", {"a": (3,), "b": (3,)}, ["y"], [Node("m", "mean", ["a", "b"], ["y"])])
    )
    q = lightspeed.quantize(g, "trained", input_types={"a": "ap_fixed<8,3>", "b": "ap_ufixed<6,4>"})
    assert q.precision["m"]["param"].max_value >= 0.5  # 1/2 exactly
    a, b = np.array([[-4.0, 3.96875, 0.5]]), np.array([[15.75, 0.0, 0.25]])
    np.testing.assert_array_equal(q.predict({"a": a, "b": b})["y"], (a + b) / 2)


# -- (2) float semantics against onnxruntime, ONNX import forms


def _onnx_model():
    nodes = [
        helper.make_node("Sub", ["a", "b"], ["d"]),
        helper.make_node("Max", ["d", "b", "c"], ["m"]),
        helper.make_node("Mean", ["d", "b", "c"], ["e"]),
        helper.make_node("Min", ["m", "a", "e"], ["y"]),
    ]
    return make_model(nodes, {"a": [None, 4], "b": [None, 4], "c": [None, 1]}, {"y": [None, 4]})


def test_float_matches_onnxruntime():
    feeds = {
        "a": rnd(20, 4, lo=-3, hi=3),
        "b": rnd(20, 4, seed=1, lo=-3, hi=3),
        "c": rnd(20, 1, seed=2),
    }
    g = check_against_ort(_onnx_model(), feeds)
    assert [n.op for n in g.nodes] == ["sub", "max", "mean", "min"]


@pytest.mark.parametrize("op_type", ["Max", "Min"])
def test_scalar_constant_becomes_clip(op_type):
    model = make_model(
        [helper.make_node(op_type, ["x", "c"], ["y"])],
        {"x": [None, 5]},
        {"y": [None, 5]},
        inits={"c": np.array(0.25, dtype=np.float32)},
    )
    g = check_against_ort(model, {"x": rnd(30, 5, lo=-2, hi=2)})
    (node,) = g.nodes
    assert node.op == "clip"
    assert node.attrs == (
        {"min": 0.25, "max": None} if op_type == "Max" else {"min": None, "max": 0.25}
    )


def test_scalar_constant_with_two_tensors():
    model = make_model(
        [helper.make_node("Min", ["x", "c", "z"], ["y"])],
        {"x": [None, 5], "z": [None, 5]},
        {"y": [None, 5]},
        inits={"c": np.array([0.5], dtype=np.float32)},
    )
    g = check_against_ort(model, {"x": rnd(30, 5, lo=-2, hi=2), "z": rnd(30, 5, seed=3)})
    assert [n.op for n in g.nodes] == ["min", "clip"]


def test_non_scalar_constant_is_refused():
    from lightspeed.frontends import load_model

    model = make_model(
        [helper.make_node("Max", ["x", "c"], ["y"])],
        {"x": [None, 3]},
        {"y": [None, 3]},
        inits={"c": np.array([0.1, 0.2, 0.3], dtype=np.float32)},
    )
    with pytest.raises(UnsupportedOpError, match="only a scalar"):
        load_model(model)


# -- (3) auto precision, (4) QONNX round trip


def test_auto_precision_close_to_float():
    from lightspeed.frontends import load_model
    from tests.frontends.helpers import run_ir

    g = load_model(_onnx_model())
    rng = np.random.default_rng(0)
    X = {
        "a": rng.normal(0, 1, (400, 4)),
        "b": rng.normal(0, 1, (400, 4)),
        "c": rng.normal(0, 1, (400, 1)),
    }
    q = lightspeed.quantize(g, "auto", X)
    (ref,) = run_ir(g, X)
    np.testing.assert_allclose(q.predict(X)["y"], ref, atol=4 * 2.0**-10)


def test_qonnx_round_trip_bit_exact(tmp_path):
    from lightspeed.frontends import load_model
    from lightspeed.frontends.qonnx_export import export_qonnx

    g = load_model(_onnx_model())
    rng = np.random.default_rng(0)
    X = {
        "a": rng.normal(0, 1, (300, 4)),
        "b": rng.normal(0, 1, (300, 4)),
        "c": rng.normal(0, 1, (300, 1)),
    }
    q = lightspeed.quantize(g, "auto", X)
    g2 = lightspeed.load(export_qonnx(q, tmp_path / "m.onnx"))
    assert {n.op for n in g2.nodes} - {"quant"} == {"max", "mean", "min", "sub"}
    q2 = lightspeed.quantize(g2, "auto", {k: v[:10] for k, v in X.items()})
    np.testing.assert_array_equal(q2.predict(X)["y"], q.predict(X)["y"])
    for node in q.graph.nodes:
        assert {r: str(t) for r, t in q2.precision[node.name].items()} == {
            r: str(t) for r, t in q.precision[node.name].items()
        }


def test_trained_mode_types_exactly():
    g = infer_shapes(
        Graph("t", {"a": (3,), "b": (3,)}, ["y"], [Node("s", "sub", ["a", "b"], ["y"])])
    )
    q = lightspeed.quantize(g, "trained", input_types={"a": "ap_fixed<8,3>", "b": "ap_ufixed<6,4>"})
    r = q.precision["s"]["result"]  # -632..127 at 1/32, nothing lost
    assert (r.width, r.integer, r.signed, r.overflow) == (11, 6, True, "WRAP")
    a, b = np.array([[-4.0, 3.96875, 0.5]]), np.array([[15.75, 0.0, 0.25]])
    np.testing.assert_array_equal(q.predict({"a": a, "b": b})["y"], a - b)


# -- (5) RTL and (6) HLS: one small model with every op of the module


def _fw_model():
    rng = np.random.default_rng(0)
    nodes = [
        Node("fc0", "dense", ["x"], ["h"], {}, {"weight": rng.normal(0, 0.5, (8, 8)), "bias": rng.normal(0, 0.1, 8)}),
        Node("fc1", "dense", ["x"], ["k"], {}, {"weight": rng.normal(0, 0.5, (8, 1)), "bias": np.zeros(1)}),
        Node("sub", "sub", ["h", "x"], ["d"]),
        Node("max", "max", ["d", "k", "x"], ["m"]),
        Node("mean", "mean", ["m", "h", "k"], ["a"]),
        Node("min", "min", ["a", "h", "k"], ["y"]),
    ]  # fmt: skip
    g = infer_shapes(Graph("ew", {"x": (8,)}, ["y"], nodes))
    from lightspeed.quantize import AutoOptions

    X = np.random.default_rng(2).normal(0, 1, (500, 8))
    return lightspeed.quantize(g, "auto", X, options=AutoOptions(weight_bits=8, frac_bits=6))


def _vectors(q, n):
    from tests.firmware.models import random_vectors

    return random_vectors(q, n=n)


def test_rtl_bit_exact(tmp_path):
    _skip_without("find_verilator", "find_make", "find_cxx")
    from lightspeed import firmware

    q = _fw_model()
    fw = firmware.generate(q, tmp_path / "fw")
    r = firmware.check(fw, _vectors(q, 3000), q=q)
    assert r["vectors"] == 3000
    assert r["exact"], r["mismatches"]


def test_hls_csim_bit_exact(tmp_path):
    _skip_without("find_ap_types", "find_cxx")
    from lightspeed import firmware

    q = _fw_model()
    fw = firmware.generate(q, tmp_path / "fw", target="hls")
    r = firmware.check(fw, _vectors(q, 3000), q=q)
    assert r["vectors"] == 3000
    assert r["exact"], r["mismatches"]
