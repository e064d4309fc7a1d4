"""QONNX Quant/BipolarQuant import: trained types on weights, quant nodes on activations."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import lightspeed
from lightspeed.errors import ConfigError, UnsupportedOpError
from lightspeed.fixed import parse_type
from lightspeed.frontends import load_model
from tests.frontends.helpers import export_brevitas_mlp, make_model, rnd, run_ir

QD = "qonnx.custom_op.general"


def tstr(node):
    """A node's own types as strings."""
    return {r: str(t) for r, t in node.types.items()}


def quant(x, out, scale, bits, signed=1, narrow=0, mode="ROUND", name=None):
    """A Quant node plus its constant inputs (as a list of nodes and an init dict)."""
    base = name or out
    inits = {
        f"{base}_s": np.asarray(scale, dtype=np.float32),
        f"{base}_z": np.float32(0.0),
        f"{base}_b": np.float32(bits),
    }
    node = helper.make_node(
        "Quant", [x, f"{base}_s", f"{base}_z", f"{base}_b"], [out], domain=QD, name=base,
        signed=signed, narrow=narrow, rounding_mode=mode,
    )  # fmt: skip
    return node, inits


def qonnx_reference(model, feeds):
    """Execute with the qonnx package's own reference executor (skips if absent)."""
    pytest.importorskip("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(model.SerializeToString())
    for k, v in feeds.items():
        mw.set_tensor_shape(k, list(np.shape(v)))
    for o in mw.model.graph.output:
        o.type.tensor_type.ClearField("shape")
    mw = mw.transform(InferShapes())
    out = execute_onnx(mw, {k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})
    return [out[o.name] for o in model.graph.output]


def _mlp(per_channel=False):
    nodes, inits = [], {}
    for n, i in [
        quant("x", "xq", 2.0**-4, 8, name="qx"),
        quant("W1", "W1q", (2.0 ** -np.array([5, 5, 6, 4, 5, 5]))[None, :] if per_channel else 2.0**-5, 6, narrow=1, name="qw1"),
        quant("B1", "B1q", 2.0**-8, 16, name="qb1"),
        quant("r", "rq", 2.0**-2, 4, signed=0, name="qr"),
        quant("W2", "W2q", 2.0**-3, 4, mode="ROUND", name="qw2"),
    ]:  # fmt: skip
        nodes.append(n)
        inits.update(i)
    nodes[3:3] = [
        helper.make_node("Gemm", ["xq", "W1q", "B1q"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
    ]
    nodes.append(helper.make_node("MatMul", ["rq", "W2q"], ["y"], name="fc2"))
    inits.update({"W1": rnd(8, 6), "B1": rnd(6), "W2": rnd(6, 3)})
    return make_model(nodes, {"x": ["N", 8]}, {"y": ["N", 3]}, inits, extra_opsets=[QD])


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantized_mlp_types_and_values(per_channel):
    m = _mlp(per_channel)
    g = load_model(m)
    ops = [n.op for n in g.nodes]
    assert ops == ["quant", "dense", "relu", "quant", "dense"]
    assert tstr(g.nodes[0])["result"] == "ap_fixed<8,4,RND_CONV,SAT>"
    assert tstr(g.nodes[3])["result"] == "ap_ufixed<4,2,RND_CONV,SAT>"
    p1 = tstr(g.node("fc1"))
    w_t = parse_type(p1["weight"])
    if per_channel:  # frac 4..6: one type holding every channel's grid
        assert (w_t.width, w_t.integer) == (8, 2)
    else:
        assert str(w_t) == "ap_fixed<6,1,RND_CONV,SAT_SYM>"
    assert p1["bias"] == "ap_fixed<16,8,RND_CONV,SAT>"
    assert tstr(g.node("fc2"))["weight"] == "ap_fixed<4,1,RND_CONV,SAT>"
    # folded weights lie on their type's grid
    w = g.node("fc1").params["weight"]
    np.testing.assert_array_equal(w * 2.0**w_t.frac, np.round(w * 2.0**w_t.frac))
    x = rnd(64, 8, lo=-3, hi=3)
    got = run_ir(g, {"x": x})[0]
    ref = qonnx_reference(m, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_bipolar_weights():
    nodes = [
        helper.make_node("BipolarQuant", ["W", "s"], ["Wq"], domain=QD, name="bq"),
        helper.make_node("MatMul", ["x", "Wq"], ["y"], name="fc"),
    ]
    m = make_model(
        nodes,
        {"x": ["N", 5]},
        {"y": None},
        {"W": rnd(5, 4), "s": np.float32(0.5)},
        extra_opsets=[QD],
    )
    g = load_model(m)
    w = g.nodes[0].params["weight"]
    assert set(np.unique(w)) <= {-0.5, 0.5}
    t = parse_type(tstr(g.nodes[0])["weight"])
    assert t.min_value <= -0.5 and t.max_value >= 0.5 and 0.5 / t.lsb == int(0.5 / t.lsb)
    x = rnd(7, 5)
    np.testing.assert_allclose(run_ir(g, {"x": x})[0], qonnx_reference(m, {"x": x})[0], atol=1e-5)


def test_bipolar_on_activations_per_channel_scale_is_refused():
    nodes = [helper.make_node("BipolarQuant", ["x", "s"], ["y"], domain=QD, name="sign")]
    s = np.array([1.0, 2.0, 1.0, 1.0, 1.0], dtype=np.float32)
    m = make_model(nodes, {"x": ["N", 5]}, {"y": None}, {"s": s}, extra_opsets=[QD])
    with pytest.raises(UnsupportedOpError, match=r"'sign'.*activations with a per-channel scale"):
        load_model(m)


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"scale": 0.3, "bits": 1}, "1-bit signed Quant"),
        ({"scale": 0.25, "bits": 8, "signed": 0, "narrow": 1}, "unsigned narrow"),
        ({"scale": 0.25, "bits": 8, "mode": "CEIL"}, "rounding_mode CEIL"),
    ],
)
def test_activation_quant_refusals(kw, pattern):
    node, inits = quant("x", "y", kw.pop("scale"), kw.pop("bits"), name="qact", **kw)
    m = make_model([node], {"x": ["N", 4]}, {"y": None}, inits, extra_opsets=[QD])
    with pytest.raises(UnsupportedOpError, match=pattern) as err:
        load_model(m)
    assert "qact" in str(err.value)


def test_fractional_zero_point_is_refused():
    node, inits = quant("x", "y", 0.25, 8, name="qz")
    inits["qz_z"] = np.float32(0.5)
    m = make_model([node], {"x": ["N", 4]}, {"y": None}, inits, extra_opsets=[QD])
    with pytest.raises(UnsupportedOpError, match=r"'qz'.*zero_point.*not an integer"):
        load_model(m)


def test_narrow_signed_activation_is_sat_sym():
    node, inits = quant("x", "y", 2.0**-3, 4, narrow=1, name="qn")
    m = make_model([node], {"x": ["N", 4]}, {"y": None}, inits, extra_opsets=[QD])
    g = load_model(m)
    assert tstr(g.nodes[0])["result"] == "ap_fixed<4,1,RND_CONV,SAT_SYM>"
    x = np.array([[-5.0, -0.9375, 0.0625, 9.0]], dtype=np.float32)
    np.testing.assert_allclose(run_ir(g, {"x": x})[0], qonnx_reference(m, {"x": x})[0])


@pytest.mark.peer
def test_brevitas_export_imports_with_trained_types(tmp_path):
    """A real Brevitas QONNX export (power-of-two scales) imports and matches qonnx's executor."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "brevitas.onnx"
    net = export_brevitas_mlp(path, hidden=6, outputs=3, last_bias=False)
    g = load_model(path)
    assert [n.op for n in g.nodes] == ["quant", "dense", "relu", "quant", "dense"]
    assert tstr(g.nodes[0])["result"].startswith("ap_fixed<8,")
    assert tstr(g.nodes[3])["result"].startswith("ap_ufixed<8,")
    assert parse_type(tstr(g.nodes[1])["weight"]).overflow == "SAT_SYM"
    assert parse_type(tstr(g.nodes[1])["bias"]).width == 16
    import onnx

    x = rnd(1, 8, lo=-2, hi=2)
    got = run_ir(g, {next(iter(g.inputs)): x})[0]
    ref = qonnx_reference(onnx.load(str(path)), {next(iter(g.inputs)): x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_heterogeneous_bitwidths_on_weights():
    """HGQ-style per-element bit widths (0 = pruned): one type holds every element exactly."""
    bits = np.array([[0, 2, 3], [4, 5, 6]], dtype=np.float32)
    scale = (2.0 ** -np.array([[1, 1, 2], [3, 4, 4]])).astype(np.float32)
    w = rnd(2, 3, lo=-2, hi=2)
    inits = {"W": w, "s": scale, "z": np.float32(0), "b": bits}
    nodes = [
        helper.make_node("Quant", ["W", "s", "z", "b"], ["Wq"], domain=QD, name="qw", signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("MatMul", ["x", "Wq"], ["y"], name="fc"),
    ]  # fmt: skip
    m = make_model(nodes, {"x": ["N", 2]}, {"y": None}, inits, extra_opsets=[QD])
    g = load_model(m)
    t = parse_type(tstr(g.nodes[0])["weight"])
    # frac = max k = 4; integer bits = max(b - k) over unpruned elements = 6 - 4 = 2
    assert (t.frac, t.integer) == (4, 2)
    wq = g.nodes[0].params["weight"]
    assert wq[0, 0] == 0.0  # pruned
    m_int = wq * 2.0**t.frac
    assert (
        np.array_equal(m_int, np.round(m_int))
        and m_int.min() >= t.min_int
        and m_int.max() <= t.max_int
    )
    # QONNX semantics written out (qonnx's executor takes one bit width per tensor)
    half = 2.0 ** (bits - 1)
    ref_w = np.clip(np.round(w / scale), -half, half - 1) * scale * (bits > 0)
    np.testing.assert_array_equal(wq, ref_w)


def test_heterogeneous_bitwidths_on_activations_are_refused():
    node = helper.make_node("Quant", ["x", "s", "z", "b"], ["y"], domain=QD, name="qa")
    inits = {"s": np.float32(0.25), "z": np.float32(0), "b": np.array([4, 5, 6], dtype=np.float32)}
    m = make_model([node], {"x": ["N", 3]}, {"y": None}, inits, extra_opsets=[QD])
    with pytest.raises(UnsupportedOpError, match="per-element"):
        load_model(m)


@pytest.mark.peer
def test_brevitas_per_channel_conv_with_batchnorm(tmp_path):
    """Per-channel power-of-two weight scales; the float BN stays its own layer (folding it
    would change the trained weights), so the conv keeps its trained type."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("onnxoptimizer", reason="brevitas' QONNX export needs onnxoptimizer")
    import brevitas.nn as qnn
    from brevitas import quant as bq
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=bq.Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, padding=1, bias=False,
                        weight_quant=bq.Int8WeightPerChannelFixedPointMSE),
        torch.nn.BatchNorm2d(4),
        qnn.QuantReLU(act_quant=bq.Uint8ActPerTensorFixedPoint),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        qnn.QuantLinear(4 * 4 * 4, 3, bias=True, weight_quant=bq.Int8WeightPerTensorFixedPoint),
    )  # fmt: skip
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 2, 8, 8))
    net.eval()
    path = tmp_path / "brevitas_cnn.onnx"
    export_qonnx(net, torch.randn(1, 2, 8, 8), str(path), dynamo=False)
    g = load_model(path)
    assert [n.op for n in g.nodes] == [
        "quant",
        "conv",
        "batchnorm",
        "relu",
        "quant",
        "maxpool",
        "flatten",
        "dense",
    ]
    assert parse_type(tstr(g.nodes[1])["weight"]).width == 8  # not folded: still trained
    assert not g.nodes[2].types  # the BN's float scale/shift have no trained type
    with pytest.raises(ConfigError, match=r"batchnorm.*not\s+quantized in training.*layers:"):
        lightspeed.quantize(g, "trained")
    assert parse_type(tstr(g.nodes[-1])["weight"]).width == 8
    x = rnd(1, 2, 8, 8)
    got = run_ir(g, {next(iter(g.inputs)): x})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x))
    np.testing.assert_allclose(got, np.asarray(getattr(ref, "value", ref)), atol=1e-5)
