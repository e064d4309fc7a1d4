"""precision="trained" on QONNX models as exporters and qonnx's own transforms write them.

Every model is built with qonnx's tools (``cleanup``, ``GemmToMatMul``,
datatype annotations) or exported by Brevitas, and compared bit for bit with
qonnx's ``execute_onnx`` on inputs that lie on the input type's grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import lightspeed
from lightspeed.cli import main
from lightspeed.errors import ConfigError
from lightspeed.frontends import load_model
from tests.frontends.helpers import export_brevitas_mlp, make_model, rnd
from tests.frontends.test_qonnx_import import QD, qonnx_reference, quant

pytest.importorskip("qonnx")


def _grid(shape, t: str, seed=0):
    """Random inputs on the grid of type ``t`` (what the fixed-point model reads exactly)."""
    ft = lightspeed.parse_type(t)
    m = np.random.default_rng(seed).integers(ft.min_int, ft.max_int + 1, shape)
    return (m * ft.lsb).astype(np.float32)


def _gemm_model(out_quant=True):
    """x -> Gemm(Quant(W), Quant(b)) [-> Quant], the input not quantized (a QKeras export)."""
    nodes, inits = [], {}
    parts = [
        quant("W1", "W1q", 2.0**-5, 6, name="qw1"),
        quant("B1", "B1q", 2.0**-8, 12, name="qb1"),
    ]
    if out_quant:
        parts.append(quant("h", "hq", 2.0**-3, 8, name="qh"))
    for n, i in parts:
        nodes.append(n)
        inits.update(i)
    nodes.insert(2, helper.make_node("Gemm", ["x", "W1q", "B1q"], ["h"], name="fc1"))
    inits.update({"W1": rnd(8, 6), "B1": rnd(6)})
    out = "hq" if out_quant else "h"
    return make_model(nodes, {"x": [1, 8]}, {out: [1, 6]}, inits, extra_opsets=[QD])


def _qonnx(model, *transforms, input_dt=None):
    """The model after qonnx's cleanup and ``transforms``; ``input_dt`` annotates the input."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(ModelWrapper(model))
    for t in transforms:
        mw = mw.transform(t)
    if input_dt:
        mw.set_tensor_datatype(mw.graph.input[0].name, DataType[input_dt])
    return mw.model


def _gemm_to_matmul():
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    return GemmToMatMul()


@pytest.mark.filterwarnings("ignore:The GemmToMatMul")
def test_matmul_plus_quantized_bias_keeps_the_bias_type():
    """qonnx's GemmToMatMul (hls4ml's recipe) splits the bias into Add(Quant(b)); its type stays."""
    m = _qonnx(_gemm_model(), _gemm_to_matmul())
    assert [n.op_type for n in m.graph.node].count("Add") == 1
    g = load_model(m)
    dense = next(n for n in g.nodes if n.op == "dense")
    assert str(dense.types["bias"]) == "ap_fixed<12,4,RND_CONV,SAT>"
    x_name = next(iter(g.inputs))
    q = lightspeed.quantize(g, "trained", input_types={x_name: "ap_fixed<8,3>"})
    x = _grid((200, 8), "ap_fixed<8,3>")
    ref = np.concatenate([qonnx_reference(m, {x_name: r[None]})[0] for r in x])
    np.testing.assert_array_equal(q.predict(x), ref)


def test_input_without_a_type_names_every_way_to_give_one():
    g = load_model(_gemm_model())
    with pytest.raises(ConfigError) as err:
        lightspeed.quantize(g, "trained")
    msg = str(err.value)
    assert "--input-type 'x:ap_fixed<16,6>'" in msg
    assert "inputs: {x: 'ap_fixed<16,6>'}" in msg
    assert "input_types={'x': 'ap_fixed<16,6>'}" in msg


@pytest.mark.parametrize(
    ("dt", "expected", "grid"),
    [
        ("UINT8", "ap_ufixed<8,8,RND_CONV,SAT>", "ap_uint<8>"),
        ("INT4", "ap_fixed<4,4,RND_CONV,SAT>", "ap_int<4>"),
        ("FIXED<8,3>", "ap_fixed<8,3,RND_CONV,SAT>", "ap_fixed<8,3>"),
        ("BIPOLAR", "ap_fixed<2,2,RND_CONV,SAT>", None),
    ],
)
@pytest.mark.filterwarnings("ignore:The GemmToMatMul")
def test_qonnx_input_datatype_annotation_is_the_input_type(dt, expected, grid):
    m = _qonnx(_gemm_model(), _gemm_to_matmul(), input_dt=dt)
    g = load_model(m)
    x_name = next(iter(g.inputs))
    q = lightspeed.quantize(g, "trained")
    assert str(q.input_types[x_name]) == expected
    if grid is None:  # bipolar: -1/+1
        x = np.where(np.random.default_rng(1).random((100, 8)) < 0.5, -1.0, 1.0).astype(np.float32)
    else:
        x = _grid((100, 8), grid, seed=2)
    ref = np.concatenate([qonnx_reference(m, {x_name: r[None]})[0] for r in x])
    np.testing.assert_array_equal(q.predict(x), ref)


def test_cli_input_type_compiles_a_model_without_input_quant(tmp_path, capsys):
    import onnx

    path = tmp_path / "qkeras_like.onnx"
    onnx.save(_gemm_model(), str(path))
    out = tmp_path / "compiled"
    rc = main(["compile", str(path), "-o", str(out), "--precision", "trained", "--quiet"])
    assert rc == 2
    assert "--input-type" in capsys.readouterr().err
    rc = main([
        "compile", str(path), "-o", str(out), "--precision", "trained", "--quiet",
        "--input-type", "ap_fixed<8,3>",
    ])  # fmt: skip
    assert rc == 0
    q = lightspeed.load_compiled(out)
    assert str(q.input_types["x"]) == "ap_fixed<8,3>"
    x = _grid((50, 8), "ap_fixed<8,3>", seed=3)
    ref = np.concatenate([qonnx_reference(_gemm_model(), {"x": r[None]})[0] for r in x])
    np.testing.assert_array_equal(q.predict(x), ref)
    rc = main([
        "compile", str(path), "-o", str(out), "--precision", "trained", "--quiet",
        "--input-type", "y:ap_fixed<8,3>",
    ])  # fmt: skip
    assert rc == 2
    assert "model inputs are x" in capsys.readouterr().err


def test_yaml_inputs_with_trained_precision(tmp_path):
    cfg = tmp_path / "prec.yaml"
    cfg.write_text("precision: trained\ninputs:\n  x: ap_fixed<10,4>\n")
    q = lightspeed.quantize(load_model(_gemm_model()), config=str(cfg))
    assert str(q.input_types["x"]) == "ap_fixed<10,4>"
    x = _grid((50, 8), "ap_fixed<10,4>", seed=4)
    ref = np.concatenate([qonnx_reference(_gemm_model(), {"x": r[None]})[0] for r in x])
    np.testing.assert_array_equal(q.predict(x), ref)


def test_unquantized_bias_is_named_with_the_fix():
    nodes = [helper.make_node("Gemm", ["x", "W1q", "B1"], ["h"], name="fc1")]
    n, i = quant("W1", "W1q", 2.0**-5, 6, name="qw1")
    m = make_model([n, *nodes], {"x": [1, 8]}, {"h": [1, 6]},
                   {**i, "W1": rnd(8, 6), "B1": rnd(6)}, extra_opsets=[QD])  # fmt: skip
    with pytest.raises(ConfigError, match=r"'fc1'.*bias.*not\s+quantized.*layers: \{fc1"):
        lightspeed.quantize(load_model(m), "trained", input_types={"x": "ap_fixed<8,3>"})


def _brevitas_cnn(tmp_path, pool):
    """Brevitas fixed-point quantizers around a float pooling layer, exported to QONNX."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("onnxoptimizer", reason="brevitas' QONNX export needs onnxoptimizer")
    import brevitas.nn as qnn
    from brevitas import quant as bq
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=bq.Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, padding=1, bias=True, weight_quant=bq.Int8WeightPerTensorFixedPoint,
                        bias_quant=bq.Int16Bias, input_quant=None),
        qnn.QuantReLU(act_quant=bq.Uint8ActPerTensorFixedPoint),
        pool,
        qnn.QuantIdentity(act_quant=bq.Int8ActPerTensorFixedPoint),
        torch.nn.Flatten(),
        qnn.QuantLinear(4 * 4 * 4, 3, bias=False, weight_quant=bq.Int8WeightPerTensorFixedPoint),
    )  # fmt: skip
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 2, 8, 8))
    net.eval()
    path = tmp_path / "brevitas_pool.onnx"
    export_qonnx(net, torch.randn(1, 2, 8, 8), str(path), dynamo=False)
    return path


@pytest.mark.peer
def test_brevitas_avgpool_trained_is_bit_exact(tmp_path):
    """AveragePool over a power-of-two window: exact sum times 1/4, rounded only by the next Quant."""
    import onnx
    import torch

    path = _brevitas_cnn(tmp_path, torch.nn.AvgPool2d(2))
    g = load_model(path)
    assert "avgpool" in [n.op for n in g.nodes]
    q = lightspeed.quantize(g, "trained")
    x_name = next(iter(g.inputs))
    x = np.random.default_rng(5).normal(0, 1.5, (40, 2, 8, 8)).astype(np.float32)
    ref = np.concatenate([qonnx_reference(onnx.load(str(path)), {x_name: r[None]})[0] for r in x])
    np.testing.assert_array_equal(q.predict(x), ref)


def test_table_ops_get_documented_trained_defaults():
    """Sigmoid, Softmax and LeakyReLU get their documented types without calibration (trained)."""
    nodes, inits = [], {}
    for n, i in [quant("x", "xq", 2.0**-4, 8, name="qx"), quant("W", "Wq", 2.0**-5, 6, name="qw")]:
        nodes.append(n)
        inits.update(i)
    nodes += [
        helper.make_node("MatMul", ["xq", "Wq"], ["h"], name="fc"),
        helper.make_node("LeakyRelu", ["h"], ["a"], name="leaky", alpha=0.125),
        helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
        helper.make_node("Softmax", ["a"], ["y"], name="sm", axis=-1),
    ]
    inits["W"] = rnd(8, 5)
    m = make_model(nodes, {"x": ["N", 8]}, {"s": None, "y": None}, inits, extra_opsets=[QD])
    q = lightspeed.quantize(load_model(m), "trained")
    assert str(q.precision["sig"]["table"]) == "ap_ufixed<18,0,RND,SAT>"
    assert str(q.precision["sm"]["exp_table"]) == "ap_ufixed<18,0,RND,SAT>"
    assert q.precision["leaky"]["param"].frac >= 3  # alpha = 1/8 held exactly
    x = rnd(300, 8, lo=-4, hi=4)
    ref_s, ref_y = qonnx_reference(m, {"x": x})
    got = q.predict(x)
    np.testing.assert_allclose(got["s"], ref_s, atol=0.005)
    np.testing.assert_allclose(got["y"], ref_y, atol=0.02)
    assert np.mean(got["y"].argmax(1) == ref_y.argmax(1)) >= 0.99


def test_input_types_with_search_are_refused():
    with pytest.raises(ConfigError, match="do not apply to precision='search'"):
        lightspeed.quantize(load_model(_gemm_model()), "search", input_types={"x": "ap_fixed<8,3>"})


@pytest.mark.peer
@pytest.mark.filterwarnings("ignore:The GemmToMatMul")
def test_brevitas_mlp_after_gemm_to_matmul_is_bit_exact(tmp_path):
    """hls4ml's recipe on a Brevitas fixed-point export: cleanup + GemmToMatMul, then trained."""
    import onnx

    path = tmp_path / "brevitas_mlp.onnx"
    export_brevitas_mlp(path, hidden=16, outputs=4, last_bias=True, seed=1)
    m = _qonnx(onnx.load(str(path)), _gemm_to_matmul())
    assert "Gemm" not in [n.op_type for n in m.graph.node]
    g = load_model(m)
    assert all("bias" in n.types for n in g.nodes if n.op == "dense")
    q = lightspeed.quantize(g, "trained")
    x_name = next(iter(g.inputs))
    x = np.random.default_rng(6).normal(0, 2, (200, 8)).astype(np.float32)
    ref = np.concatenate([qonnx_reference(m, {x_name: r[None]})[0] for r in x])
    np.testing.assert_array_equal(q.predict(x), ref)
