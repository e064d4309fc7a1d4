"""fixed_quant (per-element cast, HGQ2's quantizers): contract, typing, refusals, RTL, HLS."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import ModelError, UnsupportedOpError
from lightspeed.fixed import FixedType, quantize_float
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx
from tests.firmware.check import skip_without as _skip_without

# -- (1) the contract against a literal per-element reference


def ref_element(v: Fraction, k: int, i: int, f: int, rnd: str, ovf: str) -> Fraction:
    """HGQ2's quantizer on one exact value, written out: round at 2^-f, then overflow."""
    k, i, f = int(k), int(i), int(f)
    if k + i + f <= 0 or (k + i + f == 1 and k and ovf == "SAT_SYM"):
        return Fraction(0)
    y = v * Fraction(2) ** f
    if rnd == "RND":
        m = math.floor(y + Fraction(1, 2))
    elif rnd == "TRN":
        m = math.floor(y)
    else:  # RND_CONV: nearest, ties to even
        m = round(y)
    lo, hi = -k * 2 ** (i + f), 2 ** (i + f) - 1  # i + f >= 0 here (else k + i + f <= 1)
    if ovf == "WRAP":
        m = (m - lo) % 2 ** (k + i + f) + lo
    else:
        lo = -hi if ovf == "SAT_SYM" and k else lo
        m = min(max(m, lo), hi)
    return m / Fraction(2) ** f


def _node(shape, seed=0, rnd="RND", ovf="WRAP"):
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 2, shape)
    i = rng.integers(-2, 4, shape)
    f = rng.integers(-1, 5, shape)
    k.flat[0], i.flat[0], f.flat[0] = 1, -1, 0  # 0 bits: pruned
    k.flat[1], i.flat[1], f.flat[1] = 1, -2, 2  # one signed bit
    params = {"k": k * 1.0, "i": i * 1.0, "f": f * 1.0}
    return Node("q", "fixed_quant", ["x"], ["y"], {"rounding": rnd, "overflow": ovf}, params)


MODES = [("RND", "WRAP"), ("TRN", "SAT"), ("RND_CONV", "SAT_SYM"), ("RND", "SAT_SYM")]


@pytest.mark.parametrize(("rnd", "ovf"), MODES)
def test_fixed_contract_matches_literal_reference(rnd, ovf):
    node = _node((3, 4), rnd=rnd, ovf=ovf)
    op = get_op("fixed_quant")
    t_in = FixedType(12, 5, True)
    m = np.random.default_rng(1).integers(t_in.min_int, t_in.max_int + 1, (40, 3, 4))
    res = op.trained_precision(node, _ctx(t_in))["result"]
    (y,) = op.run_fixed(node, [Fx(m, t_in)], {"result": res}, {})
    k, i, f = (node.params[n].astype(int) for n in "kif")
    for idx in np.ndindex(m.shape):
        e = idx[1:]
        want = ref_element(Fraction(int(m[idx]), 2**t_in.frac), k[e], i[e], f[e], rnd, ovf)
        assert Fraction(int(y.m[idx]), 2**res.frac) == want, (idx, k[e], i[e], f[e])
    # the float model fake-quantizes to the same values
    (yf,) = op.run_float(node, [m * 2.0**-t_in.frac])
    np.testing.assert_array_equal(yf, y.float())


def _ctx(t):
    from lightspeed.ops.base import TrainedContext

    return TrainedContext([t], {})


def test_cover_type_holds_every_element():
    node = _node((5, 6), seed=3)
    res = get_op("fixed_quant").trained_precision(node, _ctx(FixedType(16, 8)))["result"]
    k, i, f = (node.params[n].astype(int) for n in "kif")
    live = k + i + f > 0
    assert res.signed == bool(k[live].any())
    assert res.frac == f[live].max()
    assert res.integer == i[live].max() + int(res.signed)


# -- (2) trained typing: the graph input gets a type from which the casts are exact


@pytest.mark.parametrize(("rnd", "ovf"), [("RND", "WRAP"), ("TRN", "SAT"), ("RND", "SAT")])
def test_trained_input_type_is_exact_from_the_reals(rnd, ovf):
    node = _node((8,), seed=5, rnd=rnd, ovf=ovf)
    g = infer_shapes(Graph("t", {"x": (8,)}, ["y"], [node]))
    q = lightspeed.quantize(g, "trained")
    t_in = q.input_types["x"]
    assert t_in.rounding == "TRN"
    rng = np.random.default_rng(0)
    x = rng.normal(0, 6, (300, 8))
    # values just below, at and above ties of every element's grid
    ties = (np.floor(x * 16) + 0.5) / 16
    x = np.concatenate([x, ties, np.nextafter(ties, -np.inf), np.nextafter(ties, np.inf)])
    y = q.predict(x)
    k, i, f = (node.params[n].astype(int) for n in "kif")
    want = np.array(
        [[float(ref_element(Fraction(v), k[e], i[e], f[e], rnd, ovf)) for e, v in enumerate(row)] for row in x]
    )  # fmt: skip
    np.testing.assert_array_equal(y, want)


def test_auto_precision_keeps_the_trained_cast():
    g = infer_shapes(Graph("t", {"x": (4,)}, ["y"], [_node((4,))]))
    x = np.random.default_rng(0).normal(0, 2, (100, 4))
    qa = lightspeed.quantize(g, "auto", x)
    qt = lightspeed.quantize(g, "trained")
    assert qa.precision["q"]["result"] == qt.precision["q"]["result"]


def test_rounding_without_exact_input_type_is_refused():
    g = infer_shapes(Graph("t", {"x": (4,)}, ["y"], [_node((4,), rnd="RND_CONV", ovf="SAT")]))
    with pytest.raises(UnsupportedOpError, match=r"'q'.*RND_CONV.*input_types"):
        lightspeed.quantize(g, "trained")
    q = lightspeed.quantize(g, "trained", input_types={"x": "ap_fixed<16,6>"})
    assert q.input_types["x"] == FixedType(16, 6)


def test_shape_mismatch_is_refused():
    with pytest.raises(ModelError, match=r"'q'.*shape"):
        infer_shapes(Graph("t", {"x": (5,)}, ["y"], [_node((4,))]))


def test_qonnx_export_is_refused(tmp_path):
    from lightspeed.frontends import export_qonnx

    g = infer_shapes(Graph("t", {"x": (4,)}, ["y"], [_node((4,))]))
    q = lightspeed.quantize(g, "trained")
    with pytest.raises(UnsupportedOpError, match=r"'q'.*fixed_quant"):
        export_qonnx(q, tmp_path / "m.onnx")


def test_artifact_round_trip(tmp_path):
    g = infer_shapes(Graph("t", {"x": (6,)}, ["y"], [_node((6,))]))
    q = lightspeed.quantize(g, "trained")
    q.save(tmp_path / "m")
    from lightspeed.quantize import load_compiled

    q2 = load_compiled(tmp_path / "m")
    x = np.random.default_rng(0).normal(0, 3, (50, 6))
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))


# -- (3) RTL and HLS: per-element input cast -> dense -> relu -> per-element cast


def _fw_model():
    rng = np.random.default_rng(0)
    w = quantize_float(rng.normal(0, 0.5, (6, 4)), FixedType(6, 1)) / 32.0
    nodes = [
        _node((6,), seed=7),
        Node("fc", "dense", ["y"], ["h"], {}, {"weight": w, "bias": np.array([0.5, -0.25, 0, 1])},
             types={"weight": FixedType(6, 1), "bias": FixedType(4, 2)}),
        Node("act", "relu", ["h"], ["r"]),
        Node("q2", "fixed_quant", ["r"], ["out"], {"rounding": "TRN", "overflow": "SAT"},
             {"k": np.zeros(4), "i": np.array([1.0, 2, 0, -1]), "f": np.array([3.0, 1, 4, 0])}),
    ]  # fmt: skip
    g = infer_shapes(Graph("fq", {"x": (6,)}, ["out"], nodes))
    return lightspeed.quantize(g, "trained")


def test_rtl_bit_exact(tmp_path):
    _skip_without("find_verilator", "find_make", "find_cxx")
    from lightspeed import firmware
    from tests.firmware.models import random_vectors

    q = _fw_model()
    fw = firmware.generate(q, tmp_path / "fw")
    r = firmware.check(fw, random_vectors(q, n=2000), q=q)
    assert r["vectors"] == 2000
    assert r["exact"], r["mismatches"]


def test_hls_csim_bit_exact(tmp_path):
    _skip_without("find_ap_types", "find_cxx")
    from lightspeed import firmware
    from tests.firmware.models import random_vectors

    q = _fw_model()
    fw = firmware.generate(q, tmp_path / "fw", target="hls")
    r = firmware.check(fw, random_vectors(q, n=2000), q=q)
    assert r["vectors"] == 2000
    assert r["exact"], r["mismatches"]
