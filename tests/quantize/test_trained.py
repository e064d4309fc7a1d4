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
from tests.frontends.helpers import make_model, rnd
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
