"""QONNX Trunc (v1 and v2) and FloatQuant, against qonnx's executor."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import lightspeed
from lightspeed.errors import UnsupportedOpError

pytest.importorskip("qonnx", reason="qonnx is not installed (pip install qonnx)")

QD = "qonnx.custom_op.general"


def _model(nodes, inits, version):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    ops = [helper.make_opsetid("", 13), helper.make_opsetid(QD, version)]
    return helper.make_model(graph, opset_imports=ops, ir_version=8)


def _trunc_model(version, scale, mode="FLOOR", zp=0.0, out_scale=2.0**-2):
    q = helper.make_node(
        "Quant",
        ["x", "s", "z", "b"],
        ["xq"],
        domain=QD,
        name="q",
        signed=1,
        narrow=0,
        rounding_mode="ROUND",
    )
    ins = ["xq", "s", "z", "bin"] + (["so"] if version == 2 else []) + ["bout"]
    t = helper.make_node("Trunc", ins, ["y"], domain=QD, name="trunc", rounding_mode=mode)
    inits = {"s": scale, "z": zp, "b": 8.0, "bin": 8.0, "bout": 6.0, "so": out_scale}
    return _model([q, t], inits, version)


def _qonnx(model, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(model).transform(InferShapes())
    return np.concatenate([execute_onnx(mw, {"x": x[i : i + 1]})["y"] for i in range(len(x))])


@pytest.mark.parametrize(
    "version,scale,mode,zp",
    [(2, 2.0**-4, "FLOOR", 0.0), (1, 2.0**-4, "FLOOR", 0.0), (2, 2.0**-4, "ROUND", 0.0),
     (2, 0.0371, "FLOOR", 0.0), (1, 0.0371, "ROUND", 3.0)],
)  # fmt: skip
def test_trunc_matches_qonnx(version, scale, mode, zp):
    m = _trunc_model(version, scale, mode, zp, out_scale=scale * 4)
    # a power-of-two scale divides exactly: off-grid inputs too; a float scale: on its grid
    # (off it, qonnx's float32 x/scale decides near-ties by its own rounding error)
    step = 0.75 if np.log2(scale) == np.round(np.log2(scale)) else 1.0
    x = (np.arange(-140, 142, step)[:272].reshape(-1, 8) * np.float32(scale)).astype(np.float32)
    want = _qonnx(m, x)
    q = lightspeed.quantize(lightspeed.load(m), precision="trained")
    got = np.asarray(q.predict(x))
    np.testing.assert_array_equal(got.astype(np.float32), want)
    assert len(np.unique(want)) > 10


def test_float_quant_is_refused():
    node = helper.make_node("FloatQuant", ["x", "s", "e", "m", "b"], ["y"], domain=QD, name="fp8")
    m = _model([node], {"s": 1.0, "e": 4.0, "m": 3.0, "b": 7.0}, 1)
    with pytest.raises(UnsupportedOpError, match=r"'fp8'.*FloatQuant.*fixed point only"):
        lightspeed.load(m)


def _mt_model(thresholds, shape, **attrs):
    q = helper.make_node(
        "Quant", ["x", "s", "z", "b"], ["xq"], domain=QD, name="q", signed=1, narrow=0,
        rounding_mode="ROUND",
    )  # fmt: skip
    mt = helper.make_node("MultiThreshold", ["xq", "T"], ["y"], domain=QD, name="mt", **attrs)
    inits = {"s": 2.0**-5, "z": 0.0, "b": 8.0, "T": thresholds}
    graph = helper.make_graph(
        [q, mt], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, *shape])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    ops = [helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)]
    return helper.make_model(graph, opset_imports=ops, ir_version=8)


@pytest.mark.parametrize(
    "shape,rows,attrs",
    [((4, 3, 3), 4, {"out_scale": 0.5, "out_bias": -2.0, "out_dtype": "INT4"}),
     ((6,), 1, {"out_dtype": "UINT3"}),
     ((3, 5), 5, {"out_dtype": "UINT3", "data_layout": "NWC"})],
)  # fmt: skip
def test_multithreshold_matches_qonnx(shape, rows, attrs):
    rng = np.random.default_rng(0)
    t = np.sort(rng.normal(0, 1, (rows, 7)), axis=1)
    t[0, 3] = 0.25  # a threshold exactly on the input grid: x >= t must hold at equality
    m = _mt_model(t, shape, **attrs)
    x = rng.normal(0, 1.5, (60, *shape)).astype(np.float32)
    x[0].flat[0] = 0.25
    want = _qonnx(m, x)
    q = lightspeed.quantize(lightspeed.load(m), precision="trained")
    np.testing.assert_array_equal(np.asarray(q.predict(x)).astype(np.float32), want)
    assert len(np.unique(want)) >= 6


def test_bipolar_activation_matches_qonnx():
    """BipolarQuant on activations (binary networks): a sign, scaled."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (8, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], domain=QD, name="q",
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("BipolarQuant", ["W", "ws"], ["Wq"], domain=QD, name="wq"),
        helper.make_node("MatMul", ["xq", "Wq"], ["h"], name="mm"),
        helper.make_node("BipolarQuant", ["h", "as"], ["y"], domain=QD, name="sign"),
    ]  # fmt: skip
    inits = {"s": 2.0**-4, "z": 0.0, "b": 6.0, "W": w, "ws": 1.0, "as": 0.5}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)],
        ir_version=8,
    )  # fmt: skip
    x = rng.normal(0, 1, (100, 8)).astype(np.float32)
    x[0] = 0.0  # a zero sum: sign(0) = +1
    want = _qonnx(m, x)
    q = lightspeed.quantize(lightspeed.load(m), precision="trained")
    got = np.asarray(q.predict(x)).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(want)) == {-0.5, 0.5}
    assert "multithreshold" in [n.op for n in q.graph.nodes]


def test_finn_style_binary_mlp_matches_qonnx():
    """FINN's TFC pattern: float 2x - 1 on the input, sign activations, binary weights,
    a float BatchNorm between MatMul and sign: the float ops become scale steps."""
    rng = np.random.default_rng(2)
    bn = {k: rng.uniform(0.5, 2.0, 6).astype(np.float32) for k in ("g", "v")}
    bn.update({k: rng.normal(0, 1, 6).astype(np.float32) for k in ("beta", "mean")})
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"], name="mul"),
        helper.make_node("Sub", ["x2", "one"], ["xc"], name="sub"),
        helper.make_node("BipolarQuant", ["xc", "s1"], ["xb"], domain=QD, name="sign_in"),
        helper.make_node("BipolarQuant", ["W", "s1"], ["Wb"], domain=QD, name="wq"),
        helper.make_node("MatMul", ["xb", "Wb"], ["h"], name="mm"),
        helper.make_node("BatchNormalization", ["h", "g", "beta", "mean", "v"], ["hb"], name="bn"),
        helper.make_node("BipolarQuant", ["hb", "s1"], ["y"], domain=QD, name="sign_out"),
    ]  # fmt: skip
    inits = {"two": 2.0, "one": 1.0, "s1": 1.0, "W": rng.normal(0, 1, (8, 6)), **bn}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)],
        ir_version=8,
    )  # fmt: skip
    x = (rng.integers(0, 256, (200, 8)) / 256).astype(np.float32)  # on the ap_ufixed<8,0> grid
    want = _qonnx(m, x)
    g = lightspeed.load(m)
    assert [n.op for n in g.nodes].count("multithreshold") == 2
    q = lightspeed.quantize(g, precision="trained", input_types={"x": "ap_ufixed<8,0>"})
    np.testing.assert_array_equal(np.asarray(q.predict(x)).astype(np.float32), want)
    assert set(np.unique(want)) == {-1.0, 1.0}
