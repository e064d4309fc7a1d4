"""QAT layers: fake quantization == lightspeed.fixed, PyTorch eval == emulator bit for bit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")

from torch import nn  # noqa: E402

import lightspeed  # noqa: E402
import lightspeed.nn as lnn  # noqa: E402
from lightspeed.errors import ConfigError, UnsupportedOpError  # noqa: E402
from lightspeed.fixed import OVERFLOW_MODES, QUANT_MODES, FixedType, quantize_float, to_float  # noqa: E402
from lightspeed.nn import Quantizer  # noqa: E402


def _data(n=400, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)
    return x, y


def _torch_eval(model, x):
    with torch.no_grad():
        return model.eval()(torch.as_tensor(x)).numpy()


@pytest.mark.parametrize("rounding,overflow", list(itertools.product(QUANT_MODES, OVERFLOW_MODES)))
@pytest.mark.parametrize("signed", [True, False])
def test_fake_quant_matches_fixed(rounding, overflow, signed):
    rng = np.random.default_rng(1)
    t = FixedType(6, 2, signed, rounding, overflow)
    # values on and between grid points, exact ties, and far out of range (overflow modes)
    grid = np.arange(-200, 200) / 16.0
    x = np.concatenate([grid, grid + 1 / 64, rng.normal(0, 6, 2000)])
    q = Quantizer(t)
    got = q(torch.as_tensor(x, dtype=torch.float64)).numpy()
    want = to_float(quantize_float(x, t), t)
    np.testing.assert_array_equal(got, want)
    assert q.fixed_type == t


def test_straight_through_gradient():
    x = torch.tensor([-10.0, -0.3, 0.2, 1.4, 10.0], requires_grad=True)
    Quantizer("ap_fixed<4,2,RND,SAT>")(x).sum().backward()
    # SAT: identity inside the range, zero where clipped
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 1, 1, 0])
    x.grad = None
    Quantizer("ap_fixed<4,2,RND,WRAP>")(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 1, 1, 1])


def test_scale_must_be_power_of_two():
    assert Quantizer(width=8, scale=2.0**-5).fixed_type == FixedType(8, 3, True, "RND", "SAT")
    with pytest.raises(ConfigError, match="not a power of two"):
        Quantizer(width=8, scale=0.3)


def test_per_channel_quantizer():
    q = Quantizer(width=[4, 6], integer=[1, 2])
    w = torch.tensor([[0.33, -0.9], [1.37, -1.9]], dtype=torch.float64)
    out = q(w).numpy()
    np.testing.assert_array_equal(
        out[0], to_float(quantize_float(w[0].numpy(), q.channel_types()[0]), 3)
    )
    np.testing.assert_array_equal(
        out[1], to_float(quantize_float(w[1].numpy(), q.channel_types()[1]), 4)
    )
    assert q.fixed_type == FixedType(6, 2, True, "RND", "SAT")  # max integer + max fractional bits


def test_mlp_with_fused_batchnorm_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    x, y = _data()
    f = nn.Sequential(
        nn.Linear(16, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )
    lnn.fit(f, x, y, epochs=2)
    model = lnn.convert(f, x, weight_bits=5, act_bits=6, output_bits=8)
    assert model[1].bn is not None  # the BatchNorm was fused into the first QLinear
    lnn.fit(model, x, y, epochs=1)
    q = lnn.to_quantized(model, (16,))
    want = _torch_eval(model, x * 1.5)  # beyond the calibrated range: saturation is exercised too
    got = q.predict((x * 1.5).astype(np.float64))
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 20
    assert [n.op for n in q.graph.nodes] == ["dense", "relu", "dense", "relu", "dense"]
    assert str(q.precision["dense_1"]["weight"]) == str(model[1].weight_quant.fixed_type)
    # the compiled directory keeps the trained types
    q.save(tmp_path / "c")
    np.testing.assert_array_equal(
        lightspeed.load_compiled(tmp_path / "c").predict(x.astype(np.float64)),
        _torch_eval(model, x),
    )


def _cnn():
    return nn.Sequential(
        lnn.QInput("ap_fixed<8,3,RND_CONV,SAT>"),
        lnn.QConv2d(
            2,
            4,
            3,
            padding=1,
            weight=Quantizer(width=[4, 5, 6, 7], integer=[1, 1, 0, 2]),
            batchnorm=True,
        ),
        lnn.QLeakyReLU(0.1, output="ap_fixed<9,3,RND,SAT>"),
        nn.MaxPool2d(2),
        lnn.QBatchNorm2d(4, output="ap_fixed<10,4,TRN,WRAP>"),
        lnn.QReLU6("ap_ufixed<6,3,RND_ZERO,SAT_SYM>"),
        lnn.QConv2d(
            4,
            3,
            3,
            stride=2,
            weight="ap_fixed<5,1,RND_INF,SAT>",
            output="ap_fixed<8,3,TRN_ZERO,WRAP>",
        ),
        lnn.QHardTanh(),
        nn.Flatten(),
        lnn.QLinear(12, 5, weight="ap_fixed<6,1>", output="ap_fixed<10,4,RND_MIN_INF,SAT_ZERO>"),
    )


def test_cnn_every_layer_kind_is_bit_exact():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 2, 12, 12)).astype(np.float32)
    model = _cnn()
    model.train()
    for _ in range(3):  # move the BatchNorm running statistics away from their init
        model(torch.as_tensor(x)).sum().backward()
    q = lnn.to_quantized(model, (2, 12, 12))
    assert [n.op for n in q.graph.nodes] == [
        "conv", "leaky_relu", "maxpool", "batchnorm", "clip", "conv", "clip", "flatten", "dense",
    ]  # fmt: skip
    for scale in (1.0, 3.0):
        np.testing.assert_array_equal(
            q.predict((x * scale).astype(np.float64)), _torch_eval(model, x * scale)
        )


def test_conv1d_grouped_bit_exact():
    torch.manual_seed(1)
    model = nn.Sequential(
        lnn.QInput("ap_fixed<10,4,RND,SAT>"),
        lnn.QConv1d(
            4, 6, 3, stride=2, padding=1, dilation=1, groups=2, weight="ap_fixed<6,1,RND,SAT>"
        ),
        lnn.QReLU("ap_ufixed<7,3,RND,SAT>"),
        lnn.QConv1d(6, 2, 2, weight="ap_fixed<5,0,RND,SAT>", bias=False),
    )
    x = np.random.default_rng(2).normal(size=(32, 4, 11)).astype(np.float32) * 2
    q = lnn.to_quantized(model, (4, 11))
    np.testing.assert_array_equal(q.predict(x.astype(np.float64)), _torch_eval(model, x))


def test_qonnx_round_trip_keeps_types(tmp_path):
    from lightspeed.frontends.qonnx_export import export_qonnx
    from lightspeed.quantize import from_trained

    torch.manual_seed(0)
    x, _ = _data()
    model = nn.Sequential(
        lnn.QInput("ap_fixed<8,3,RND,SAT>"),
        lnn.QLinear(16, 8, weight="ap_fixed<5,1,RND,SAT>"),
        lnn.QReLU("ap_ufixed<6,2,RND,SAT>"),
        lnn.QLinear(8, 3, weight="ap_fixed<5,1,RND,SAT>"),
    )
    q = lnn.to_quantized(model, (16,))
    path = export_qonnx(q, tmp_path / "m.onnx")
    back = from_trained(lightspeed.load(path))
    np.testing.assert_array_equal(back.predict(x.astype(np.float64)), _torch_eval(model, x))


def test_to_graph_records_trained_precision():
    model = nn.Sequential(
        lnn.QInput("ap_fixed<8,3>"), lnn.QLinear(4, 2, weight="ap_fixed<4,1,RND,SAT>")
    )
    g, inputs = lnn.export(model, (4,))
    node = g.nodes[0]
    assert node.op == "dense" and node.params["weight"].shape == (4, 2)
    assert str(node.types["weight"]) == "ap_fixed<4,1,RND,SAT>"
    assert set(node.types) == {"weight", "bias", "accum", "result"}
    assert inputs == {"input": FixedType(8, 3)}
    # exported params are the quantized values, exactly on the weight grid
    w = node.params["weight"]
    np.testing.assert_array_equal(w * 8, np.round(w * 8))


def test_from_graph_matches_float_ir():
    from tests.conftest import make_mlp

    g = make_mlp()
    f = lnn.from_graph(g)
    x = np.random.default_rng(0).normal(size=(20, 16))
    from lightspeed.emulate import run_float

    want = run_float(g, {"x": x})[g.outputs[0]]
    with torch.no_grad():
        got = f(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# -- refusals ---------------------------------------------------------------


def test_refuses_unquantized_layer():
    model = nn.Sequential(lnn.QInput("ap_fixed<8,3>"), nn.Linear(4, 2))
    with pytest.raises(UnsupportedOpError, match="Linear"):
        lnn.to_quantized(model, (4,))


def test_refuses_missing_input_type():
    model = nn.Sequential(lnn.QLinear(4, 2))
    with pytest.raises(ConfigError, match="QInput"):
        lnn.to_quantized(model, (4,))


def test_refuses_clip_bound_off_grid():
    model = nn.Sequential(lnn.QInput("ap_fixed<6,3>"), lnn.QClip(0.0, 0.3))
    with pytest.raises(ConfigError, match="not on the grid"):
        lnn.to_quantized(model, (4,))


def test_refuses_accumulator_beyond_float64():
    model = nn.Sequential(
        lnn.QInput("ap_fixed<32,16>"),
        lnn.QLinear(64, 2, weight="ap_fixed<30,2>", bias_type="ap_fixed<30,8>"),
    )
    with pytest.raises(ConfigError, match="float64"):
        lnn.to_quantized(model, (64,))


def test_refuses_per_channel_activation_and_functions():
    with pytest.raises(ConfigError, match="per tensor"):
        lnn.QReLU(Quantizer(width=[4, 5], integer=[1, 1]))

    class Sig(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = lnn.QInput("ap_fixed<8,3>")

        def forward(self, x):
            return torch.sigmoid(self.inp(x))

    with pytest.raises(UnsupportedOpError, match="sigmoid"):
        lnn.to_quantized(Sig(), (4,))


def test_convert_refuses_hard_sigmoid():
    x, _ = _data(d=4)
    with pytest.raises(UnsupportedOpError, match="Hardsigmoid"):
        lnn.convert(nn.Sequential(nn.Linear(4, 4), nn.Hardsigmoid()), x)
