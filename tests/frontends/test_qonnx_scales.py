"""QONNX Quant with float (non-power-of-two) scales and zero points, against qonnx's executor.

Models come from Brevitas' own QONNX export with its default float-scale
quantizers. The reference is ``qonnx.core.onnx_exec.execute_onnx`` (float32).
Inputs lie on the input Quant's grid (data as a quantized front end delivers
it): then every code and every output equals qonnx's bit for bit, the outputs
compared as float32 (qonnx's ``(q - zp) * scale`` is one float32 rounding of
the exact value the emulator holds).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")
qnn = pytest.importorskip("brevitas.nn", reason="brevitas is not installed (pip install brevitas)")
pytest.importorskip("qonnx", reason="qonnx is not installed (pip install qonnx)")
pytest.importorskip("onnxoptimizer", reason="brevitas' QONNX export needs onnxoptimizer")

import lightspeed  # noqa: E402
from lightspeed.errors import UnsupportedOpError  # noqa: E402
from tests.firmware.check import assert_firmware_exact  # noqa: E402


def _export(model, shape, path, transforms=()):
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, input_t=torch.randn(1, *shape), export_path=str(path))
    mw = cleanup_model(ModelWrapper(str(path)))
    for t in transforms:
        mw = mw.transform(t)
    mw.save(str(path))
    return str(path)


def _train(model, shape, steps=8, seed=0):
    """A few optimiser steps, so the learned float scales are nowhere near powers of two."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(steps):
        x = torch.randn(64, *shape) * 2
        y = model(x)
        y = getattr(y, "value", y)
        loss = (y - x.reshape(64, -1)[:, : y.shape[1]]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _on_grid(path, x):
    """Inputs rounded to the first Quant's grid, in float32 as qonnx computes it."""
    from qonnx.core.modelwrapper import ModelWrapper

    mw = ModelWrapper(path)
    name = mw.graph.input[0].name
    while (t := mw.find_consumer(name)).op_type == "Transpose":  # channels-last models
        name = t.output[0]
    q0 = next(n for n in mw.graph.node if n.op_type == "Quant" and n.input[0] == name)
    s = mw.get_initializer(q0.input[1])
    return (np.round(x / s) * s).astype(np.float32)


def _qonnx(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    mw = ModelWrapper(path)
    i, o = mw.graph.input[0].name, mw.graph.output[0].name
    return np.concatenate([execute_onnx(mw, {i: x[k : k + 1]})[o] for k in range(len(x))])


def _compare(path, shape, n=200, seed=0):
    x = _on_grid(path, (np.random.default_rng(seed).standard_normal((n, *shape)) * 2))
    want = _qonnx(path, x)
    q = lightspeed.quantize(lightspeed.load(path), precision="trained")
    got = np.asarray(q.predict(x)).reshape(want.shape)
    np.testing.assert_array_equal(got.astype(np.float32), want)
    assert len(np.unique(want)) > 20  # not a saturated or constant output
    return q


def _mlp(act, relu_act, weight, n_out=5):
    from torch import nn

    return nn.Sequential(
        qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
        qnn.QuantLinear(16, 32, bias=True, weight_quant=weight),
        qnn.QuantReLU(act_quant=relu_act, return_quant_tensor=True),
        qnn.QuantLinear(32, n_out, bias=True, weight_quant=weight),
        qnn.QuantIdentity(act_quant=act),
    )


@pytest.mark.parametrize("kind", ["default", "per_channel", "zero_point"])
def test_brevitas_float_scale_mlp_bit_exact(tmp_path, kind):
    from brevitas import quant as bq

    act, relu, weight = (
        bq.Int8ActPerTensorFloat,
        bq.Uint8ActPerTensorFloat,
        bq.Int8WeightPerTensorFloat,
    )
    if kind == "per_channel":
        weight = bq.Int8WeightPerChannelFloat
    if kind == "zero_point":  # asymmetric activations: zero points of ~128
        act = relu = bq.ShiftedUint8ActPerTensorFloat
    model = _mlp(act, relu, weight)
    _train(model, (16,))
    q = _compare(_export(model, (16,), tmp_path / "mlp.onnx"), (16,))
    dense = [n for n in q.graph.nodes if n.op == "dense"]
    for d in dense:  # integer codes in the MAC, the float scale after the accumulator
        assert str(q.precision[d.name]["weight"]) == "ap_fixed<8,8,RND_CONV,SAT>"
        step = q.graph.consumers(d.outputs[0])[0]
        assert step.op == "batchnorm" and step.attrs.get("qscale")


def test_brevitas_float_scale_cnn_bit_exact(tmp_path):
    from brevitas import quant as bq
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            w = bq.Int8WeightPerChannelFloat
            self.qi = qnn.QuantIdentity(return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(3, 6, 3, padding=1, weight_quant=w)
            self.r1 = qnn.QuantReLU(return_quant_tensor=True)
            self.pool = nn.MaxPool2d(2)
            self.c2 = qnn.QuantConv2d(6, 6, 3, weight_quant=w)
            self.r2 = qnn.QuantReLU(return_quant_tensor=True)
            self.fc = qnn.QuantLinear(6 * 2 * 2, 4, bias=True)
            self.qo = qnn.QuantIdentity()

        def forward(self, x):
            y = self.r2(self.c2(self.pool(self.r1(self.c1(self.qi(x))))))
            return self.qo(self.fc(y.flatten(1)))

    model = CNN()
    _train(model, (3, 8, 8), seed=1)
    q = _compare(_export(model, (3, 8, 8), tmp_path / "cnn.onnx"), (3, 8, 8), n=100)
    # lightspeed's own QONNX export of the result reads back with the same bits
    from lightspeed.frontends import export_qonnx

    export_qonnx(q, tmp_path / "again.onnx")
    q2 = lightspeed.quantize(lightspeed.load(tmp_path / "again.onnx"), precision="trained")
    x = np.random.default_rng(3).standard_normal((50, 3, 8, 8))
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))


def test_channels_last_cnn_bit_exact(tmp_path):
    """qonnx's ConvertToChannelsLastAndClean (hls4ml's preprocessing): the channels-last
    Conv/MaxPool import as the standard ops, the transposes between them cancel."""
    from brevitas import quant as bq
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from torch import nn

    model = nn.Sequential(
        qnn.QuantIdentity(act_quant=bq.Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantConv2d(3, 4, 3, padding=1, weight_quant=bq.Int8WeightPerChannelFloat),
        qnn.QuantReLU(return_quant_tensor=True),
        nn.MaxPool2d(2),
        qnn.QuantConv2d(4, 4, 3, weight_quant=bq.Int8WeightPerTensorFloat),
        qnn.QuantReLU(return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(4 * 2 * 2, 3, bias=True),
        qnn.QuantIdentity(),
    )
    _train(model, (3, 8, 8), seed=4)
    path = _export(model, (3, 8, 8), tmp_path / "cl.onnx", [ConvertToChannelsLastAndClean()])
    from qonnx.core.modelwrapper import ModelWrapper

    domains = {n.domain for n in ModelWrapper(path).graph.node}
    assert "qonnx.custom_op.channels_last" in domains
    q = _compare(path, (3, 8, 8), n=100)
    assert [n.op for n in q.graph.nodes].count("transpose") == 1  # only the one before Flatten


def test_residual_add_bit_exact(tmp_path):
    """A quantized tensor read by a layer and by a skip connection (QuantEltwiseAdd)."""
    from torch import nn

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.qi = qnn.QuantIdentity(return_quant_tensor=True)
            self.l1 = qnn.QuantLinear(16, 16, bias=True)
            self.r1 = qnn.QuantReLU(return_quant_tensor=True)
            self.l2 = qnn.QuantLinear(16, 16, bias=True)
            self.q2 = qnn.QuantIdentity(return_quant_tensor=True)
            self.add = qnn.QuantEltwiseAdd(return_quant_tensor=True)
            self.l3 = qnn.QuantLinear(16, 4, bias=True)
            self.qo = qnn.QuantIdentity()

        def forward(self, x):
            a = self.r1(self.l1(self.qi(x)))
            return self.qo(self.l3(self.add(a, self.q2(self.l2(a)))))

    model = Res()
    _train(model, (16,), seed=6)
    q = _compare(_export(model, (16,), tmp_path / "res.onnx"), (16,))
    assert "add" in [n.op for n in q.graph.nodes]


def test_float_scale_after_gemm_to_matmul(tmp_path):
    """hls4ml's recipe (cleanup, GemmToMatMul): MatMul + Add(bias) joins the scale step."""
    from brevitas import quant as bq
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    model = _mlp(bq.Int8ActPerTensorFloat, bq.Uint8ActPerTensorFloat, bq.Int8WeightPerTensorFloat)
    _train(model, (16,), seed=2)
    path = _export(model, (16,), tmp_path / "mm.onnx", transforms=[GemmToMatMul()])
    _compare(path, (16,))


def test_zero_point_before_padded_conv_is_refused(tmp_path):
    from brevitas import quant as bq
    from torch import nn

    model = nn.Sequential(
        qnn.QuantIdentity(act_quant=bq.ShiftedUint8ActPerTensorFloat, return_quant_tensor=True),
        qnn.QuantConv2d(2, 3, 3, padding=1),
    )
    model.train()
    with torch.no_grad():
        for _ in range(3):  # min-max statistics: a zero point near the middle
            model(torch.randn(32, 2, 5, 5))
    model.eval()
    with pytest.raises(UnsupportedOpError, match="zero point before a zero-padded"):
        lightspeed.load(_export(model, (2, 5, 5), tmp_path / "zp_conv.onnx"))


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_float_scale_firmware_bit_exact(target, tmp_path):
    """The scale steps are per-channel multiply-adds: RTL and HLS C simulation equal the emulator."""
    from brevitas import quant as bq

    model = _mlp(
        bq.ShiftedUint8ActPerTensorFloat, bq.Uint8ActPerTensorFloat, bq.Int8WeightPerTensorFloat
    )
    _train(model, (16,), seed=3)
    q = lightspeed.quantize(
        lightspeed.load(_export(model, (16,), tmp_path / "fw.onnx")), precision="trained"
    )
    assert_firmware_exact(q, tmp_path, target, n=500)


def test_channels_last_float_conv_bn_pool(tmp_path):
    """Channels-last Conv, BatchNormalization and MaxPool (float model) equal qonnx's execution."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.util.cleanup import cleanup_model
    from torch import nn

    from tests.frontends.helpers import run_ir

    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 3, 3), nn.Flatten(), nn.Linear(3 * 2 * 2, 5),
    )  # fmt: skip
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    path = str(tmp_path / "float_cl.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.randn(1, 2, 8, 8), path, dynamo=False)
    mw = cleanup_model(ModelWrapper(path)).transform(ConvertToChannelsLastAndClean())
    ops = {(n.domain, n.op_type) for n in mw.graph.node}
    assert {("qonnx.custom_op.channels_last", o) for o in ("Conv", "MaxPool")} <= ops
    mw.save(path)
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    want = execute_onnx(mw, {mw.graph.input[0].name: x})[mw.graph.output[0].name]
    g = lightspeed.load(path)
    np.testing.assert_allclose(run_ir(g, {g_in: x for g_in in g.inputs})[0], want, atol=1e-5)


def test_channels_last_unknown_op_is_refused():
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"], domain="qonnx.custom_op.channels_last", name="r")
    m = helper.make_model(
        helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 2])],
        ),
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.channels_last", 1)],
    )  # fmt: skip
    with pytest.raises(
        UnsupportedOpError, match=r"channels_last.Relu.*Conv/MaxPool/BatchNormalization"
    ):
        lightspeed.load(m)


def test_channels_last_fixed_point_cnn_bit_exact(tmp_path):
    """Power-of-two (FixedPoint) quantizers after ConvertToChannelsLastAndClean: bit-exact."""
    from brevitas import quant as bq
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from torch import nn

    model = nn.Sequential(
        qnn.QuantIdentity(act_quant=bq.Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, padding=1, weight_quant=bq.Int8WeightPerTensorFixedPoint,
                        bias_quant=bq.Int16Bias),
        qnn.QuantReLU(act_quant=bq.Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
        nn.MaxPool2d(2),
        qnn.QuantConv2d(4, 3, 3, weight_quant=bq.Int8WeightPerTensorFixedPoint,
                        bias_quant=bq.Int16Bias),
        qnn.QuantIdentity(act_quant=bq.Int8ActPerTensorFixedPoint),
    )  # fmt: skip
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 2, 8, 8))
    model.eval()
    path = _export(model, (2, 8, 8), tmp_path / "cl_fixed.onnx", [ConvertToChannelsLastAndClean()])
    x = np.random.default_rng(0).standard_normal((100, 2, 8, 8)).astype(np.float32)
    want = _qonnx(path, x)
    q = lightspeed.quantize(lightspeed.load(path), precision="trained")
    np.testing.assert_array_equal(np.asarray(q.predict(x)).reshape(want.shape), want)
    assert len(np.unique(want)) > 20
