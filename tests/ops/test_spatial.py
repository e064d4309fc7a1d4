"""pad, slice, resize, depth_to_space, space_to_depth: contract, float (vs onnxruntime, torch), QONNX, RTL, HLS."""

from __future__ import annotations

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

from tests.firmware.check import assert_firmware_exact  # noqa: E402
from tests.frontends.helpers import check_against_ort, make_model, run_ir  # noqa: E402

T = FixedType(9, 4, True, "RND", "SAT")


def _run(node, x):
    (y,) = get_op(node.op).run_fixed(node, [Fx(x, T)], {}, {})
    assert y.t == T  # pure data movement: the type passes through
    return y.m


# -- (1) the contract against literal per-element references


def test_pad_slice_resize_literal():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5) - 50
    y = _run(Node("p", "pad", ["x"], ["y"], {"pads": [0, 1, 2, 1, 0, 3]}), x)
    assert y.shape == (2, 4, 5, 10)
    for b, c, h, w in np.ndindex(*y.shape):
        inside = c < 3 and 1 <= h < 5 and 2 <= w < 7
        assert y[b, c, h, w] == (x[b, c, h - 1, w - 2] if inside else 0)
    node = Node(
        "s", "slice", ["x"], ["y"], {"starts": [2, 0, 4], "ends": [-1, 4, 0], "steps": [-1, 2, -3]}
    )
    y = _run(node, x)
    assert y.shape == (2, 3, 2, 2)
    for b, c, h, w in np.ndindex(*y.shape):
        assert y[b, c, h, w] == x[b, 2 - c, 2 * h, 4 - 3 * w]
    # axes and steps are optional: listed axes only, step 1 (as the Keras frontend writes Cropping)
    node = Node("s", "slice", ["x"], ["y"], {"starts": [1], "ends": [4], "axes": [2]})
    np.testing.assert_array_equal(_run(node, x), x[:, :, :, 1:4])
    y = _run(Node("r", "resize", ["x"], ["y"], {"scales": [1, 3, 2]}), x)
    assert y.shape == (2, 3, 12, 10)
    for b, c, h, w in np.ndindex(*y.shape):
        assert y[b, c, h, w] == x[b, c, h // 3, w // 2]


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_space_literal(mode):
    bs, c = 2, 3
    x = np.arange(2 * c * bs * bs * 3 * 4).reshape(2, c * bs * bs, 3, 4)
    node = Node("d", "depth_to_space", ["x"], ["y"], {"blocksize": bs, "mode": mode})
    y = _run(node, x)
    assert y.shape == (2, c, 6, 8)
    for b, ch, h, w in np.ndindex(*y.shape):
        i, j = h % bs, w % bs
        src = (i * bs + j) * c + ch if mode == "DCR" else ch * bs * bs + i * bs + j
        assert y[b, ch, h, w] == x[b, src, h // bs, w // bs]
    back = _run(Node("s", "space_to_depth", ["y"], ["z"], {"blocksize": bs, "mode": mode}), y)
    np.testing.assert_array_equal(back, x)


def test_bad_attrs_are_shape_errors():
    from lightspeed.errors import ShapeError

    for op, attrs, shape in [
        ("slice", {"starts": [0], "ends": [9], "steps": [1]}, (4,)),
        ("pad", {"pads": [-1, 0]}, (4,)),
        ("resize", {"scales": [0]}, (4,)),
        ("depth_to_space", {"blocksize": 2}, (3, 2, 2)),
        ("space_to_depth", {"blocksize": 2}, (4, 3, 2)),
    ]:
        with pytest.raises(ShapeError):
            infer_shapes(Graph("t", {"x": shape}, ["y"], [Node("n", op, ["x"], ["y"], attrs)]))


# -- (2) float semantics against onnxruntime, ONNX import forms


def _i64(*v):
    return np.array(v, dtype=np.int64)


ONNX_CASES = {
    "pad": ([helper.make_node("Pad", ["x", "pads"], ["y"], mode="constant")], {"pads": _i64(0, 0, 1, 2, 0, 1, 0, 0)}, 13),
    "pad_value": ([helper.make_node("Pad", ["x", "pads", "v"], ["y"])], {"pads": _i64(0, 0, 1, 2, 0, 1, 0, 0), "v": np.float32(-1.3)}, 13),
    "pad_reflect": ([helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")], {"pads": _i64(0, 0, 2, 1, 0, 1, 3, 0)}, 13),
    "pad_edge": ([helper.make_node("Pad", ["x", "pads"], ["y"], mode="edge")], {"pads": _i64(0, 1, 0, 2, 0, 0, 3, 1)}, 13),
    "pad_wrap": ([helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")], {"pads": _i64(0, 0, 2, 1, 0, 0, 3, 2)}, 19),
    "pad_crop": ([helper.make_node("Pad", ["x", "pads"], ["y"])], {"pads": _i64(0, 0, -1, 2, 0, 1, 0, -3)}, 13),
    "crop_only": ([helper.make_node("Pad", ["x", "pads"], ["y"])], {"pads": _i64(0, -1, 0, -2, 0, 0, -3, 0)}, 13),
    "pad_axes": ([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"])], {"pads": _i64(1, 2, 3, 0), "axes": _i64(-1, 2)}, 18),
    "slice": ([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"st": _i64(1, -1), "en": _i64(-1, -100), "ax": _i64(2, 3), "sp": _i64(1, -2)}, 13),
    "slice_default": ([helper.make_node("Slice", ["x", "st", "en"], ["y"])], {"st": _i64(0, 1), "en": _i64(2**63 - 1, 3)}, 13),
    "resize": ([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest")], {"sc": np.array([1, 1, 2, 3], np.float32)}, 13),
    "resize_torch": ([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")], {"sc": np.array([1, 1, 2, 2], np.float32)}, 13),
    "resize_sizes": ([helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest", nearest_mode="round_prefer_ceil")], {"sz": _i64(1, 4, 16, 6)}, 13),
    "resize_axes": ([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", axes=[3, -2])], {"sc": np.array([3, 2], np.float32)}, 18),
    "resize_axes_sizes": ([helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest", axes=[2], nearest_mode="floor", coordinate_transformation_mode="asymmetric")], {"sz": _i64(16)}, 18),
    "d2s_dcr": ([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2)], {}, 13),
    "d2s_crd": ([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD")], {}, 13),
    "s2d": ([helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2)], {}, 13),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_float_matches_onnxruntime(case):
    nodes, inits, opset = ONNX_CASES[case]
    batch = 1 if case == "resize_sizes" else None  # constant sizes fix the batch
    x = np.random.default_rng(0).normal(0, 1, (batch or 3, 4, 8, 6)).astype(np.float32)
    model = make_model(nodes, {"x": [batch, 4, 8, 6]}, {"y": None}, inits, opset=opset)
    g = check_against_ort(model, {"x": x})
    assert len(g.nodes) == (2 if case == "pad_crop" else 1)


@pytest.mark.parametrize(
    ("node", "inits", "match"),
    [
        (helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect"), {"pads": _i64(0, 0, -1, 1, 0, 0, 1, 1)}, "negative pads"),
        (helper.make_node("Pad", ["x", "pads", "v"], ["y"]), {"pads": _i64(0, 0, 1, 1, 0, 0, 1, 1), "v": np.float32(np.inf)}, "finite"),
        (helper.make_node("Pad", ["x", "pads"], ["y"]), {"pads": _i64(1, 0, 0, 0, 0, 0, 0, 0)}, "batch"),
        (helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="cubic"), {"sc": np.array([1, 1, 2, 2], np.float32)}, "cubic"),
        (helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest"), {"sc": np.array([1, 1, 1.5, 2], np.float32)}, "integer"),
        (helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", coordinate_transformation_mode="align_corners"), {"sc": np.array([1, 1, 3, 3], np.float32)}, "align_corners"),
        (helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"]), {"st": _i64(1), "en": _i64(2), "ax": _i64(0)}, "batch"),
    ],
)  # fmt: skip
def test_unsupported_forms_are_named(node, inits, match):
    from lightspeed.frontends import load_model

    model = make_model([node], {"x": [None, 4, 8, 6]}, {"y": None}, inits, opset=13)
    with pytest.raises(UnsupportedOpError, match=match):
        load_model(model)


def test_torch_export():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = torch.nn.ConstantPad2d((1, 2, 0, 1), -0.5)
            self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")
            self.shuffle = torch.nn.PixelShuffle(2)

        def forward(self, x):
            return self.shuffle(self.up(self.pad(x))[:, :, 1:-1, ::2])

    model = Net().eval()
    g = lightspeed.load(model, input_shape=(4, 5, 6))
    assert {"pad", "resize", "slice"} <= {n.op for n in g.nodes}
    x = np.random.default_rng(1).normal(0, 1, (5, 4, 5, 6)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], ref, atol=1e-6)


# -- (4) QONNX round trip; (3)/(7) the type passes through in auto and trained mode


def _ir_model():
    rng = np.random.default_rng(0)
    nodes = [
        Node("conv", "conv", ["x"], ["c"], {"pads": [1, 1, 1, 1]}, {"weight": rng.normal(0, 0.5, (4, 2, 3, 3)), "bias": rng.normal(0, 0.1, 4)}),
        Node("pad", "pad", ["c"], ["p"], {"pads": [0, 1, 0, 0, 0, 1], "value": 0.75}),
        Node("refl", "pad", ["p"], ["p2"], {"pads": [0, 0, 1, 0, 1, 0], "mode": "reflect"}),
        Node("slice", "slice", ["p2"], ["s"], {"starts": [3, 0, 1], "ends": [-1, 5, 6], "steps": [-1, 1, 1]}),
        Node("up", "resize", ["s"], ["u"], {"scales": [1, 2, 2]}),
        Node("d2s", "depth_to_space", ["u"], ["d"], {"blocksize": 2, "mode": "CRD"}),
        Node("s2d", "space_to_depth", ["d"], ["e"], {"blocksize": 2, "mode": "DCR"}),
        Node("fc", "dense", ["f"], ["y"], {}, {"weight": rng.normal(0, 0.3, (400, 3)), "bias": np.zeros(3)}),
        Node("flat", "flatten", ["e"], ["f"]),
    ]  # fmt: skip
    nodes = [*nodes[:7], nodes[8], nodes[7]]
    return infer_shapes(Graph("spatial", {"x": (2, 4, 5)}, ["y"], nodes))


def test_types_pass_through_and_qonnx_round_trip(tmp_path):
    from lightspeed.frontends.qonnx_export import export_qonnx

    g = _ir_model()
    X = np.random.default_rng(2).normal(0, 1, (300, 2, 4, 5))
    q = lightspeed.quantize(g, "auto", X)
    tt = q.tensor_types
    assert tt["c"] == tt["p"] == tt["p2"] == tt["s"] == tt["u"] == tt["d"] == tt["e"]
    np.testing.assert_allclose(q.predict(X), q.predict_float(X), atol=0.05)
    g2 = lightspeed.load(export_qonnx(q, tmp_path / "m.onnx"))
    assert {"pad", "slice", "resize", "depth_to_space", "space_to_depth"} <= {
        n.op for n in g2.nodes
    }
    q2 = lightspeed.quantize(g2, "auto", X[:10])
    np.testing.assert_array_equal(q2.predict(X), q.predict(X))
    qt = lightspeed.quantize(
        infer_shapes(Graph("t", {"x": (3, 4)}, ["y"], [Node("p", "pad", ["x"], ["y"], {"pads": [1, 0, 0, 2]})])),
        "trained", input_types={"x": "ap_fixed<6,2>"},
    )  # fmt: skip
    assert qt.tensor_types["y"] == qt.tensor_types["x"]


def _pad_graph(value):
    node = Node("p", "pad", ["x"], ["y"], {"pads": [1, 0, 0, 2], "value": value})
    return infer_shapes(Graph("t", {"x": (3, 4)}, ["y"], [node]))


@pytest.mark.parametrize(
    ("value", "fill", "out_type"),
    [
        (0.75, 12, "ap_fixed<6,2>"),  # on the grid, in range: the type passes through
        (-0.1, -2, "ap_fixed<6,2>"),  # off the grid: nearest (-1.6 lsb -> -2)
        (0.09375, 2, "ap_fixed<6,2>"),  # half an lsb: ties up (1.5 lsb -> 2)
        (-37.3, -597, "ap_fixed<11,7>"),  # out of range: integer bits added, fraction kept
        (5.0, 80, "ap_fixed<8,4>"),
    ],
)
def test_pad_value_fill_and_type(value, fill, out_type):
    from lightspeed.fixed import parse_type

    q = lightspeed.quantize(_pad_graph(value), "trained", input_types={"x": "ap_fixed<6,2>"})
    t = q.tensor_types["y"]
    assert (t.width, t.integer, t.signed) == (lambda p: (p.width, p.integer, p.signed))(
        parse_type(out_type)
    )
    x = np.round(np.random.default_rng(0).uniform(-2, 1.9, (50, 3, 4)) * 16) / 16
    y = np.asarray(q.predict(x))
    assert y.shape == (50, 4, 6)
    np.testing.assert_array_equal(y[:, 1:, :4], x)  # the inputs pass through unchanged
    assert np.all(y[:, 0] == fill / 16) and np.all(y[:, :, 4:] == fill / 16)
    np.testing.assert_array_equal(np.asarray(q.predict_float(x))[:, 0], value)


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_pad_value_widened_firmware_bit_exact(target, tmp_path):
    q = lightspeed.quantize(_pad_graph(-37.3), "trained", input_types={"x": "ap_fixed<6,2>"})
    assert_firmware_exact(q, tmp_path, target, n=200)


def test_s2d_crd_export_is_refused(tmp_path):
    from lightspeed.errors import ModelError
    from lightspeed.frontends.qonnx_export import export_qonnx

    g = infer_shapes(
        Graph(
            "t",
            {"x": (1, 4, 4)},
            ["y"],
            [Node("s", "space_to_depth", ["x"], ["y"], {"blocksize": 2, "mode": "CRD"})],
        )
    )
    q = lightspeed.quantize(g, "trained", input_types={"x": "ap_fixed<6,2>"})
    with pytest.raises(ModelError, match="DCR"):
        export_qonnx(q, tmp_path / "m.onnx")


# -- (5) RTL and (6) HLS


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_firmware_bit_exact(target, tmp_path):
    from lightspeed.quantize import AutoOptions

    X = np.random.default_rng(2).normal(0, 1, (300, 2, 4, 5))
    q = lightspeed.quantize(_ir_model(), "auto", X, options=AutoOptions(weight_bits=6, frac_bits=5))
    assert_firmware_exact(q, tmp_path, target, n=2000)
