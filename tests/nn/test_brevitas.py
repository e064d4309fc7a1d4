"""Brevitas -> QONNX -> lightspeed: trained types complete exactly, emulator == Brevitas."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")
qnn = pytest.importorskip("brevitas.nn", reason="brevitas is not installed (pip install brevitas)")
pytest.importorskip("qonnx", reason="qonnx is not installed (pip install qonnx)")
pytest.importorskip("onnxoptimizer", reason="brevitas' QONNX export needs onnxoptimizer")

import lightspeed  # noqa: E402
from lightspeed.quantize import from_trained  # noqa: E402


def _quantizers(w_bits: int, a_bits: int, u_bits: int, per_channel: bool = False):
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Uint8ActPerTensorFixedPoint,
    )
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint

    base = Int8WeightPerChannelFixedPoint if per_channel else Int8WeightPerTensorFixedPoint
    w = type("W", (base,), {"bit_width": w_bits})
    a = type("A", (Int8ActPerTensorFixedPoint,), {"bit_width": a_bits})
    u = type("U", (Uint8ActPerTensorFixedPoint,), {"bit_width": u_bits})
    return w, a, u


def _export(model, x, path):
    from brevitas.export import export_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, input_t=x[:1], export_path=str(path))
    return path


def _calibrate(model, x):
    model.train()
    with torch.no_grad():
        for _ in range(3):  # let the power-of-two scales settle on the data
            model(x)
    model.eval()


@pytest.mark.parametrize("w_bits,u_bits,per_channel", [(6, 6, False), (4, 8, False), (5, 6, True)])
def test_brevitas_mlp_bit_exact(tmp_path, w_bits, u_bits, per_channel):
    from brevitas.quant import Int16Bias
    from torch import nn

    torch.manual_seed(0)
    w, a, u = _quantizers(w_bits, 8, u_bits, per_channel)
    model = nn.Sequential(
        qnn.QuantIdentity(act_quant=a, return_quant_tensor=True),
        qnn.QuantLinear(16, 32, bias=True, weight_quant=w, bias_quant=Int16Bias),
        qnn.QuantReLU(act_quant=u, return_quant_tensor=True),
        qnn.QuantLinear(32, 5, bias=True, weight_quant=w, bias_quant=Int16Bias),
    )
    if per_channel:  # channels of different magnitude get different power-of-two scales
        with torch.no_grad():
            model[1].weight[:8] *= 0.1
    x = torch.randn(512, 16) * 2
    _calibrate(model, x)
    with torch.no_grad():
        want = model(x)
    want = getattr(want, "value", want).double().numpy()
    g = lightspeed.load(_export(model, x, tmp_path / "brevitas.onnx"))
    q = from_trained(g)
    got = q.predict(x.double().numpy())
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 50
    dense = [n for n in q.graph.nodes if n.op == "dense"]
    if not per_channel:
        assert str(q.precision[dense[0].name]["weight"]).startswith(f"ap_fixed<{w_bits},")
    else:  # one covering type: wider than each channel's 5 bits, holding all exactly
        assert q.precision[dense[0].name]["weight"].width > w_bits


def test_brevitas_cnn_bit_exact(tmp_path):
    from brevitas.quant import Int16Bias
    from torch import nn

    torch.manual_seed(1)
    w, a, u = _quantizers(5, 8, 6)
    model = nn.Sequential(
        qnn.QuantIdentity(act_quant=a, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, padding=1, weight_quant=w, bias_quant=Int16Bias),
        qnn.QuantReLU(act_quant=u, return_quant_tensor=True),
        qnn.QuantConv2d(4, 3, 3, stride=2, weight_quant=w, bias_quant=Int16Bias),
    )
    x = torch.randn(64, 2, 9, 9)
    _calibrate(model, x)
    with torch.no_grad():
        want = model(x)
    want = getattr(want, "value", want).double().numpy()
    q = from_trained(lightspeed.load(_export(model, x, tmp_path / "cnn.onnx")))
    np.testing.assert_array_equal(q.predict(x.double().numpy()), want)
