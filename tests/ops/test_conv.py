"""conv_transpose (and depthwise/separable conv end to end): contract, float, auto, trained, QONNX, RTL, HLS."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

import lightspeed
from lightspeed.fixed import FixedType
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

from tests.firmware.check import assert_firmware_exact  # noqa: E402
from tests.firmware.check import skip_without as _skip_without  # noqa: E402
from tests.frontends.helpers import check_against_ort, make_model, run_ir  # noqa: E402
from tests.ops.test_smooth import ref_cast  # noqa: E402

# -- (1) the fixed contract against the literal scatter definition


def ref_transpose(x, w, b, strides, pads, out_pad, dil, out_shape, group=1):
    """y[co, o] = b[co] + sum over (ci, i, j) with o = i*s + j*d - pad_begin of x[ci, i] w[ci, co, j]

    (ci and co in the same group; w's second axis counts the group's outputs)."""
    nd = len(strides)
    y = {}
    cin_g, cout_g = w.shape[0] // group, w.shape[1]
    cout = cout_g * group
    for co in range(cout):
        for o in itertools.product(*[range(n) for n in out_shape]):
            y[(co, *o)] = b[co]
    for ci, co in itertools.product(range(w.shape[0]), range(cout)):
        if ci // cin_g != co // cout_g:
            continue
        for i in itertools.product(*[range(n) for n in x.shape[1:]]):
            for j in itertools.product(*[range(n) for n in w.shape[2:]]):
                o = tuple(i[a] * strides[a] + j[a] * dil[a] - pads[a] for a in range(nd))
                if all(0 <= o[a] < out_shape[a] for a in range(nd)):
                    y[(co, *o)] += x[(ci, *i)] * w[(ci, co % cout_g, *j)]
    return y


CASES = [
    ({"strides": [2], "pads": [1, 0], "output_padding": [1], "dilations": [1]}, (2, 5), (2, 3, 3)),
    ({"strides": [2, 3], "pads": [1, 0, 2, 1], "output_padding": [1, 0], "dilations": [1, 2]}, (2, 3, 4), (2, 2, 3, 2)),
    ({"strides": [1, 1], "pads": [0, 0, 0, 0]}, (1, 2, 2), (1, 2, 2, 2)),
    ({"strides": [3], "pads": [0, 2], "group": 2}, (4, 4), (4, 3, 3)),
]  # fmt: skip


@pytest.mark.parametrize(("attrs", "xshape", "wshape"), CASES)
def test_fixed_contract_matches_literal_reference(attrs, xshape, wshape):
    rng = np.random.default_rng(0)
    t_x, w_t, b_t = FixedType(6, 2, True), FixedType(5, 1, True), FixedType(6, 2, True)
    acc = FixedType(24, 10, True)  # exact: no rounding, no overflow, order irrelevant
    res = FixedType(7, 3, True, "RND", "SAT")
    w = rng.normal(0, 0.6, wshape)
    b = rng.normal(0, 0.5, wshape[1] * attrs.get("group", 1))
    node = Node("t", "conv_transpose", ["x"], ["y"], dict(attrs), {"weight": w, "bias": b})
    (out_shape,) = get_op("conv_transpose").infer_shape(node, [xshape])
    prec = {"weight": w_t, "bias": b_t, "accum": acc, "result": res}
    impl = get_op("conv_transpose")
    q = impl.quantize_params(node, prec)
    xm = rng.integers(t_x.min_int, t_x.max_int + 1, (3, *xshape))
    (y,) = impl.run_fixed(node, [Fx(xm, t_x)], prec, q)
    assert y.m.shape == (3, *out_shape)
    nd = len(xshape) - 1
    full = dict(attrs)
    full.setdefault("output_padding", [0] * nd)
    full.setdefault("dilations", [1] * nd)
    for s in range(3):
        xf = np.vectorize(lambda m: Fraction(int(m), 2**t_x.frac), otypes=[object])(xm[s])
        wf = np.vectorize(lambda m: Fraction(int(m), 2**w_t.frac), otypes=[object])(q["weight"])
        bf = [Fraction(int(m), 2**b_t.frac) for m in q["bias"]]
        ref = ref_transpose(
            xf,
            wf,
            bf,
            full["strides"],
            full["pads"],
            full["output_padding"],
            full["dilations"],
            out_shape[1:],
            attrs.get("group", 1),
        )
        for idx, v in ref.items():
            assert int(y.m[(s, *idx)]) == ref_cast(v, res), (s, idx)


# -- (2) float semantics against onnxruntime and torch


ONNX_CASES = {
    "1d": ({"strides": [2], "pads": [1, 0], "output_padding": [1]}, [None, 3, 7], (3, 2, 4)),
    "2d": ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1], "dilations": [1, 2]}, [None, 3, 5, 4], (3, 2, 3, 3)),
    "same_upper": ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, [None, 3, 5, 4], (3, 2, 3, 3)),
    "output_shape": ({"strides": [3, 2], "output_shape": [14, 7]}, [None, 3, 5, 4], (3, 2, 3, 2)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_float_matches_onnxruntime(case):
    attrs, xshape, wshape = ONNX_CASES[case]
    rng = np.random.default_rng(1)
    inits = {
        "w": rng.normal(0, 1, wshape).astype(np.float32),
        "b": rng.normal(0, 1, wshape[1]).astype(np.float32),
    }
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    model = make_model([node], {"x": xshape}, {"y": None}, inits)
    x = rng.normal(0, 1, (4, *xshape[1:])).astype(np.float32)
    g = check_against_ort(model, {"x": x}, atol=1e-4)
    assert [n.op for n in g.nodes] == ["conv_transpose"]


def test_grouped_transpose_with_batchnorm():
    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float32)  # 2 groups: 2 -> 3 channels each
    bn = {n: rng.uniform(0.5, 1.5, 6).astype(np.float32) for n in ("s", "b", "m", "v")}
    nodes = [
        helper.make_node(
            "ConvTranspose", ["x", "w"], ["c"], group=2, strides=[2, 1], pads=[1, 0, 0, 1]
        ),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"]),
    ]
    model = make_model(nodes, {"x": [None, 4, 5, 5]}, {"y": None}, {"w": w, **bn})
    x = rng.normal(0, 1, (6, 4, 5, 5)).astype(np.float32)
    g = check_against_ort(model, {"x": x}, atol=1e-4)
    assert [n.op for n in g.nodes] == ["conv_transpose"]  # the BatchNorm folded in
    assert g.nodes[0].attrs["group"] == 2


def test_depthwise_transpose_is_bit_exact_in_firmware(tmp_path):
    _skip_without("find_ap_types", "find_cxx")
    from lightspeed import firmware
    from tests.firmware.models import random_vectors

    rng = np.random.default_rng(7)
    node = Node(
        "dt",
        "conv_transpose",
        ["x"],
        ["y"],
        {"strides": [2], "group": 3},
        {"weight": rng.normal(0, 0.5, (3, 1, 3)), "bias": rng.normal(0, 0.1, 3)},
    )
    g = infer_shapes(Graph("dwt", {"x": (3, 6)}, ["y"], [node]))
    q = lightspeed.quantize(g, "auto", rng.normal(0, 1, (200, 3, 6)))
    for target in ("hls", "verilog"):
        fw = firmware.generate(q, tmp_path / target, target=target)
        r = firmware.check(fw, random_vectors(q, n=500), q=q)
        assert r["exact"], r["mismatches"]


def test_torch_transpose_and_separable():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 3, 3, padding=1, groups=3),  # depthwise
        torch.nn.Conv2d(3, 4, 1),  # pointwise: together a separable conv
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
        torch.nn.BatchNorm2d(2),  # folded into the transposed conv's weights and bias
    ).eval()
    with torch.no_grad():
        model[-1].running_mean.uniform_(-1, 1)
        model[-1].running_var.uniform_(0.5, 2)
        model[-1].weight.uniform_(0.5, 2)
    g = lightspeed.load(model, input_shape=(3, 6, 5))
    assert [n.op for n in g.nodes] == ["conv", "conv", "relu", "conv_transpose"]
    assert g.nodes[0].attrs["group"] == 3
    x = np.random.default_rng(2).normal(0, 1, (20, 3, 6, 5)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], ref, atol=1e-5)
    q = lightspeed.quantize(g, "auto", x)
    np.testing.assert_allclose(q.predict(x), ref, atol=0.02)


# -- (3) auto, (4) QONNX round trip, (7) trained


def _fw_graph():
    rng = np.random.default_rng(0)
    nodes = [
        Node("dw", "conv", ["x"], ["a"], {"pads": [1, 1, 1, 1], "group": 3}, {"weight": rng.normal(0, 0.5, (3, 1, 3, 3)), "bias": rng.normal(0, 0.1, 3)}),
        Node("pw", "conv", ["a"], ["b"], {}, {"weight": rng.normal(0, 0.5, (4, 3, 1, 1))}),
        Node("up", "conv_transpose", ["b"], ["c"], {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, {"weight": rng.normal(0, 0.5, (4, 2, 3, 3)), "bias": rng.normal(0, 0.1, 2)}),
        Node("flat", "flatten", ["c"], ["f"]),
        Node("fc", "dense", ["f"], ["y"], {}, {"weight": rng.normal(0, 0.1, (2 * 8 * 6, 3)), "bias": np.zeros(3)}),
    ]  # fmt: skip
    return infer_shapes(Graph("deconv", {"x": (3, 4, 3)}, ["y"], nodes))


def test_auto_and_qonnx_round_trip(tmp_path):
    from lightspeed.frontends.qonnx_export import export_qonnx

    g = _fw_graph()
    X = np.random.default_rng(3).normal(0, 1, (300, 3, 4, 3))
    q = lightspeed.quantize(g, "auto", X)
    np.testing.assert_allclose(q.predict(X), q.predict_float(X), atol=0.02)
    g2 = lightspeed.load(export_qonnx(q, tmp_path / "m.onnx"))
    assert "conv_transpose" in {n.op for n in g2.nodes}
    q2 = lightspeed.quantize(g2, "auto", X[:10])
    np.testing.assert_array_equal(q2.predict(X), q.predict(X))


def test_trained_types_are_exact():
    rng = np.random.default_rng(4)
    w_t, b_t = FixedType(6, 1, True), FixedType(8, 2, True)
    w = np.ldexp(rng.integers(-32, 32, (2, 3, 3)), -5)
    b = np.ldexp(rng.integers(-128, 128, 3), -6)
    node = Node(
        "t",
        "conv_transpose",
        ["x"],
        ["y"],
        {"strides": [2], "pads": [0, 1]},
        {"weight": w, "bias": b},
    )
    node.types = {"weight": w_t, "bias": b_t}
    g = infer_shapes(Graph("t", {"x": (2, 5)}, ["y"], [node]))
    q = lightspeed.quantize(g, "trained", input_types={"x": "ap_fixed<6,2>"})
    x = np.ldexp(rng.integers(-32, 32, (10, 2, 5)), -4)
    np.testing.assert_array_equal(q.predict(x), run_ir(g, {"x": x})[0])


# -- (5) RTL and (6) HLS: depthwise + pointwise (separable) + transposed conv


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_firmware_bit_exact(target, tmp_path):
    from lightspeed.quantize import AutoOptions

    X = np.random.default_rng(3).normal(0, 1, (300, 3, 4, 3))
    q = lightspeed.quantize(_fw_graph(), "auto", X, options=AutoOptions(weight_bits=6, frac_bits=5))
    assert_firmware_exact(q, tmp_path, target, n=2000)
