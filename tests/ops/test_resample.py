"""resize_linear: bilinear upsampling against torch, onnxruntime and Keras; fixed point and firmware."""

from __future__ import annotations

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import UnsupportedOpError
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

from tests.firmware.check import assert_firmware_exact  # noqa: E402
from tests.frontends.helpers import check_against_ort, make_model  # noqa: E402


def _graph(shape, scales, ctm):
    node = Node("up", "resize_linear", ["x"], ["y"], {"scales": scales, "ctm": ctm})
    return infer_shapes(Graph("t", {"x": shape}, ["y"], [node]))


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("scale", [(2, 2), (3, 2)])
def test_float_matches_torch(align, scale):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(0, 1, (4, 2, 3, 5))
    g = _graph((2, 3, 5), [1, *scale], "align_corners" if align else "half_pixel")
    (y,) = get_op("resize_linear").run_float(g.nodes[0], [x])
    ref = torch.nn.functional.interpolate(
        torch.tensor(x), scale_factor=scale, mode="bilinear", align_corners=align
    ).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-12)


def _sc(*v):
    return np.array(v, np.float32)


@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
def test_onnx_import_matches_onnxruntime(ctm):
    node = helper.make_node(
        "Resize", ["x", "", "sc"], ["y"], mode="linear", coordinate_transformation_mode=ctm
    )
    model = make_model([node], {"x": [None, 2, 4, 3]}, {"y": None}, {"sc": _sc(1, 1, 2, 3)}, 13)
    x = np.random.default_rng(1).normal(0, 1, (3, 2, 4, 3)).astype(np.float32)
    g = check_against_ort(model, {"x": x})
    assert [n.op for n in g.nodes] == ["resize_linear"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop_and_resize"),
        ({"mode": "cubic"}, "cubic"),
    ],
)  # fmt: skip
def test_unsupported_forms_are_named(kw, match):
    from lightspeed.frontends import load_model

    node = helper.make_node("Resize", ["x", "", "sc"], ["y"], **kw)
    model = make_model([node], {"x": [None, 2, 4, 3]}, {"y": None}, {"sc": _sc(1, 1, 2, 2)}, 13)
    with pytest.raises(UnsupportedOpError, match=match):
        load_model(model)


@pytest.mark.parametrize("align", [False, True])
def test_torch_upsample_bilinear(align):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 8 * 8, 4),
    ).eval()
    g = lightspeed.load(net, input_shape=(2, 4, 4))
    assert "resize_linear" in {n.op for n in g.nodes}
    x = np.random.default_rng(2).normal(0, 1, (300, 2, 4, 4)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    q = lightspeed.quantize(g, calibration=x)
    np.testing.assert_allclose(np.asarray(q.predict_float(x)).reshape(ref.shape), ref, atol=1e-5)
    agree = (np.asarray(q.predict(x)).reshape(ref.shape).argmax(-1) == ref.argmax(-1)).mean()
    assert agree >= 0.99, agree


def test_keras_upsampling_bilinear():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x_in = keras.Input((4, 5, 2))
    y = keras.layers.UpSampling2D((2, 3), interpolation="bilinear")(x_in)
    model = keras.Model(x_in, y)
    x = np.random.default_rng(3).normal(0, 1, (20, 4, 5, 2)).astype(np.float32)
    ref = np.asarray(model.predict(x, verbose=0))
    g = lightspeed.load(model)
    from lightspeed.emulate import run_float

    got = run_float(g, {next(iter(g.inputs)): x})
    got = np.asarray(got[g.outputs[0]] if isinstance(got, dict) else got)
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=1e-5)


def test_trained_is_exact_for_dyadic_weights_and_refuses_others():
    g = _graph((2, 3, 4), [1, 2, 2], "half_pixel")  # weights 1/4, 3/4: exact
    q = lightspeed.quantize(g, "trained", input_types={"x": "ap_fixed<8,3>"})
    p = q.precision["up"]
    assert p["weight"].frac == 2 and p["result"] == p["accum"] and p["accum"].frac == 5 + 4
    x = np.round(np.random.default_rng(4).uniform(-4, 3.9, (100, 2, 3, 4)) * 32) / 32
    np.testing.assert_array_equal(q.predict(x), q.predict_float(x))
    with pytest.raises(UnsupportedOpError, match="not exact"):
        lightspeed.quantize(
            _graph((2, 3, 4), [1, 3, 3], "align_corners"), "trained",
            input_types={"x": "ap_fixed<8,3>"},
        )  # fmt: skip


def test_auto_rounds_once_and_qonnx_round_trip(tmp_path):
    from lightspeed.frontends.qonnx_export import export_qonnx

    g = _graph((2, 3, 4), [1, 3, 2], "align_corners")  # weights k/8 and k/5: rounded to 15 bits
    x = np.random.default_rng(5).normal(0, 1, (200, 2, 3, 4))
    q = lightspeed.quantize(g, "auto", x)
    lsb = 2.0 ** -q.precision["up"]["result"].frac
    assert np.abs(np.asarray(q.predict(x)) - np.asarray(q.predict_float(x))).max() <= lsb
    g2 = lightspeed.load(export_qonnx(q, tmp_path / "m.onnx"))
    assert "resize_linear" in {n.op for n in g2.nodes}
    q2 = lightspeed.quantize(g2, "auto", x)
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))


@pytest.mark.parametrize("target", ["verilog", "hls"])
@pytest.mark.parametrize(
    ("scales", "ctm"), [([1, 2, 2], "half_pixel"), ([1, 3, 1], "align_corners")]
)
def test_firmware_bit_exact(target, scales, ctm, tmp_path):
    from lightspeed.quantize import AutoOptions

    g = _graph((2, 3, 3), scales, ctm)
    x = np.random.default_rng(6).normal(0, 1, (300, 2, 3, 3))
    q = lightspeed.quantize(g, "auto", x, options=AutoOptions(weight_bits=8, frac_bits=6))
    assert_firmware_exact(q, tmp_path, target, n=300)


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_fixed_precision_pins_every_role(target, tmp_path):
    """precision='ap_fixed<10,3>' types weight, accumulator and result alike: casts, still exact."""
    g = _graph((2, 3, 3), [1, 2, 3], "half_pixel")
    x = np.clip(np.random.default_rng(7).normal(0, 1, (300, 2, 3, 3)), -3.5, 3.5)  # in the type
    q = lightspeed.quantize(g, "ap_fixed<10,3>", x)
    assert q.precision["up"]["accum"] == q.precision["up"]["weight"]
    assert np.abs(np.asarray(q.predict(x)) - np.asarray(q.predict_float(x))).max() < 0.05
    assert_firmware_exact(q, tmp_path, target, n=300)
