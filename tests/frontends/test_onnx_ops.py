"""Every supported ONNX op, imported from small hand-built graphs, matches onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.frontends.helpers import check_against_ort, make_model, rnd

pytest.importorskip("onnxruntime")


def ops_of(g):
    return [n.op for n in g.nodes]


@pytest.mark.parametrize(
    ("alpha", "beta", "trans_b", "c_shape"),
    [(1.0, 1.0, 0, (5,)), (0.5, 2.0, 1, (1, 5)), (1.0, 1.0, 1, ()), (1.0, 1.0, 0, None)],
)
def test_gemm(alpha, beta, trans_b, c_shape):
    w = rnd(5, 8) if trans_b else rnd(8, 5)
    inits = {"W": w}
    ins = ["x", "W"]
    if c_shape is not None:
        inits["C"] = rnd(*c_shape) if c_shape else np.float32(0.25)
        ins.append("C")
    node = helper.make_node("Gemm", ins, ["y"], alpha=alpha, beta=beta, transB=trans_b)
    m = make_model([node], {"x": ["N", 8]}, {"y": ["N", 5]}, inits)
    g = check_against_ort(m, {"x": rnd(4, 8)})
    assert ops_of(g) == ["dense"]
    assert g.nodes[0].params["weight"].shape == (8, 5)


def test_matmul_add_fuses_into_one_dense():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["y"]),
    ]
    m = make_model(nodes, {"x": ["N", 6]}, {"y": ["N", 3]}, {"W": rnd(6, 3), "b": rnd(3)})
    g = check_against_ort(m, {"x": rnd(5, 6)})
    assert ops_of(g) == ["dense"] and "bias" in g.nodes[0].params
    assert g.outputs == ["y"]


def test_matmul_on_3d_input_with_bias():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Add", ["b", "h"], ["y"]),
    ]
    m = make_model(nodes, {"x": ["N", 4, 6]}, {"y": ["N", 4, 3]}, {"W": rnd(6, 3), "b": rnd(3)})
    g = check_against_ort(m, {"x": rnd(2, 4, 6)})
    assert ops_of(g) == ["dense"]


@pytest.mark.parametrize(
    "kw",
    [
        {"strides": [2], "pads": [1, 2]},
        {"dilations": [2], "pads": [2, 1]},
        {"strides": [2], "auto_pad": "SAME_LOWER"},
        {"auto_pad": "VALID"},
        {"group": 2, "pads": [1, 1]},
    ],
)
def test_conv1d(kw):
    g_ = kw.get("group", 1)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=[3], **kw)]
    m = make_model(nodes, {"x": ["N", 4, 11]}, {"y": None}, {"W": rnd(6, 4 // g_, 3), "B": rnd(6)})
    g = check_against_ort(m, {"x": rnd(3, 4, 11)})
    assert ops_of(g) == ["conv"]


@pytest.mark.parametrize(
    "kw",
    [
        {"strides": [2, 1], "pads": [1, 0, 1, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
        {"auto_pad": "VALID", "dilations": [2, 1]},
    ],
)
def test_conv2d(kw):
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], **kw)]
    m = make_model(nodes, {"x": ["N", 3, 8, 7]}, {"y": None}, {"W": rnd(5, 3, 3, 3), "B": rnd(5)})
    check_against_ort(m, {"x": rnd(2, 3, 8, 7)})


def test_depthwise_conv2d_without_bias():
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], group=4, pads=[1, 1, 1, 1])]
    m = make_model(nodes, {"x": ["N", 4, 6, 6]}, {"y": None}, {"W": rnd(4, 1, 3, 3)})
    g = check_against_ort(m, {"x": rnd(2, 4, 6, 6)})
    assert g.nodes[0].attrs["group"] == 4


def _bn_inits(c, seed=1):
    r = np.random.default_rng(seed)
    return {
        "gamma": r.uniform(0.5, 2, c).astype(np.float32),
        "beta": r.uniform(-1, 1, c).astype(np.float32),
        "mean": r.uniform(-1, 1, c).astype(np.float32),
        "var": r.uniform(0.2, 2, c).astype(np.float32),
    }


def test_batchnorm_folds_into_conv():
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["h", "gamma", "beta", "mean", "var"], ["y"], epsilon=1e-3
        ),
    ]
    inits = {"W": rnd(4, 2, 3, 3), **_bn_inits(4)}
    m = make_model(nodes, {"x": ["N", 2, 5, 5]}, {"y": None}, inits)
    g = check_against_ort(m, {"x": rnd(3, 2, 5, 5)})
    assert ops_of(g) == ["conv"]
    # folded exactly: w' = w * gamma / sqrt(var + eps)
    s = inits["gamma"].astype(np.float64) / np.sqrt(
        inits["var"].astype(np.float64) + np.float32(1e-3)
    )
    np.testing.assert_allclose(
        g.nodes[0].params["weight"], inits["W"] * s[:, None, None, None], rtol=1e-12
    )


def test_batchnorm_folds_into_gemm():
    nodes = [
        helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
        helper.make_node("BatchNormalization", ["h", "gamma", "beta", "mean", "var"], ["y"]),
    ]
    m = make_model(
        nodes, {"x": ["N", 6]}, {"y": None}, {"W": rnd(6, 4), "B": rnd(4), **_bn_inits(4)}
    )
    g = check_against_ort(m, {"x": rnd(3, 6)})
    assert ops_of(g) == ["dense"]


def test_batchnorm_stays_standalone_when_conv_output_is_shared():
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["h"]),
        helper.make_node("BatchNormalization", ["h", "gamma", "beta", "mean", "var"], ["b"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Add", ["b", "r"], ["y"]),
    ]
    m = make_model(nodes, {"x": ["N", 2, 5]}, {"y": None}, {"W": rnd(3, 2, 1), **_bn_inits(3)})
    g = check_against_ort(m, {"x": rnd(3, 2, 5)})
    assert sorted(ops_of(g)) == ["add", "batchnorm", "conv", "relu"]


def test_batchnorm_after_input_is_standalone():
    nodes = [helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["y"])]
    m = make_model(nodes, {"x": ["N", 3, 4]}, {"y": None}, _bn_inits(3))
    g = check_against_ort(m, {"x": rnd(2, 3, 4)})
    assert ops_of(g) == ["batchnorm"]


@pytest.mark.parametrize(
    ("op", "kw", "extra"),
    [
        ("Relu", {}, {}),
        ("LeakyRelu", {"alpha": 0.1}, {}),
        ("Sigmoid", {}, {}),
        ("Tanh", {}, {}),
        ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}, {}),
        ("Softmax", {"axis": -1}, {}),
        ("Softmax", {"axis": 1}, {}),
        ("Clip", {}, {"lo": np.float32(-0.5), "hi": np.float32(0.75)}),
        ("Clip", {}, {"lo": np.float32(0.0)}),
        ("Clip", {}, {"lo": np.float32(0.0), "hi": np.float32(6.0)}),
    ],
)
def test_activations(op, kw, extra):
    ins = ["x", *extra]
    node = helper.make_node(op, ins, ["y"], **kw)
    m = make_model([node], {"x": ["N", 7]}, {"y": None}, extra)
    g = check_against_ort(m, {"x": rnd(6, 7, lo=-8, hi=8)})
    if op == "Clip" and "hi" not in extra:
        assert ops_of(g) == ["relu"]


def test_hard_sigmoid_after_dense_folds_scale():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("HardSigmoid", ["h"], ["y"]),
    ]
    m = make_model(nodes, {"x": ["N", 4]}, {"y": None}, {"W": rnd(4, 3)})
    g = check_against_ort(m, {"x": rnd(5, 4, lo=-4, hi=4)})
    assert ops_of(g) == ["dense", "clip"]


def test_tensor_add_and_mul():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Add", ["x", "a"], ["s"]),
        helper.make_node("Mul", ["s", "x"], ["y"]),
    ]
    m = make_model(nodes, {"x": ["N", 3, 4]}, {"y": None})
    g = check_against_ort(m, {"x": rnd(2, 3, 4)})
    assert ops_of(g) == ["relu", "add", "mul"]


def test_per_channel_mul_add_becomes_one_batchnorm():
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["k"]),
        helper.make_node("Sub", ["k", "c"], ["d"]),
        helper.make_node("Div", ["d", "two"], ["y"]),
    ]
    inits = {"s": rnd(3, 1, 1), "b": rnd(3, 1, 1), "c": np.float32(0.5), "two": np.float32(2.0)}
    m = make_model(nodes, {"x": ["N", 3, 4, 4]}, {"y": None}, inits)
    g = check_against_ort(m, {"x": rnd(2, 3, 4, 4)})
    assert ops_of(g) == ["batchnorm"]


def test_constant_minus_tensor():
    nodes = [helper.make_node("Sub", ["c", "x"], ["y"])]
    m = make_model(nodes, {"x": ["N", 5]}, {"y": None}, {"c": rnd(5)})
    g = check_against_ort(m, {"x": rnd(2, 5)})
    assert ops_of(g) == ["batchnorm"]


def test_concat_and_pools():
    nodes = [
        helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["x"], ["b"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=-3),
        helper.make_node("MaxPool", ["c"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node(
            "AveragePool", ["d"], ["e"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
        ),
        helper.make_node("GlobalAveragePool", ["e"], ["y"]),
        helper.make_node("GlobalMaxPool", ["e"], ["z"]),
    ]
    m = make_model(nodes, {"x": ["N", 2, 8, 8]}, {"y": None, "z": None})
    g = check_against_ort(m, {"x": rnd(3, 2, 8, 8)})
    assert ops_of(g).count("concat") == 1


def test_pool1d():
    nodes = [
        helper.make_node(
            "MaxPool", ["x"], ["a"], kernel_shape=[3], strides=[2], auto_pad="SAME_UPPER"
        ),
        helper.make_node("AveragePool", ["a"], ["y"], kernel_shape=[2]),
    ]
    m = make_model(nodes, {"x": ["N", 3, 9]}, {"y": None})
    check_against_ort(m, {"x": rnd(2, 3, 9)})


def test_data_movement_and_passthrough():
    nodes = [
        helper.make_node("Identity", ["x"], ["i"]),
        helper.make_node("Dropout", ["i"], ["d"]),
        helper.make_node("Cast", ["d"], ["c"], to=1),
        helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["r"]),
        helper.make_node("Unsqueeze", ["r", "ax"], ["u"]),
        helper.make_node("Squeeze", ["u", "ax"], ["s"]),
        helper.make_node("Flatten", ["s"], ["f"], axis=1),
        helper.make_node("Identity", ["f"], ["y"]),
    ]
    inits = {"shape": np.array([0, -1, 3], dtype=np.int64), "ax": np.array([2], dtype=np.int64)}
    m = make_model(nodes, {"x": ["N", 3, 2, 4]}, {"y": None}, inits)
    g = check_against_ort(m, {"x": rnd(2, 3, 2, 4)})
    assert ops_of(g) == ["transpose", "reshape", "reshape", "reshape", "flatten"]
    assert g.outputs == ["y"]


def test_flatten_axis_2_is_refused():
    from lightspeed.errors import UnsupportedOpError
    from lightspeed.frontends import load_model

    m = make_model(
        [helper.make_node("Flatten", ["x"], ["y"], axis=2)], {"x": ["N", 3, 2, 4]}, {"y": None}
    )
    with pytest.raises(UnsupportedOpError, match=r"Flatten.*axis=1"):
        load_model(m)


def test_shape_gather_concat_reshape_is_folded():
    """The chain torch emits for ``x.view(x.size(0), -1)``."""
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"]),
        helper.make_node("Concat", ["bu", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {
        "zero": np.array(0, dtype=np.int64),
        "ax0": np.array([0], dtype=np.int64),
        "minus1": np.array([-1], dtype=np.int64),
    }
    m = make_model(nodes, {"x": ["N", 2, 3]}, {"y": None}, inits)
    g = check_against_ort(m, {"x": rnd(4, 2, 3)})
    assert [n.op for n in g.nodes] == ["reshape"] and g.shapes["y"] == (6,)


def test_constant_subgraph_on_weights_is_folded():
    nodes = [
        helper.make_node(
            "Constant", [], ["w0"], value=helper.make_tensor("v", 1, [3, 4], rnd(3, 4).ravel())
        ),
        helper.make_node("Transpose", ["w0"], ["w"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
    ]
    m = make_model(nodes, {"x": ["N", 4]}, {"y": None})
    g = check_against_ort(m, {"x": rnd(2, 4)})
    assert ops_of(g) == ["dense"]


def test_multiple_inputs_and_outputs():
    nodes = [
        helper.make_node("Gemm", ["a", "W"], ["h"]),
        helper.make_node("Concat", ["h", "b"], ["y"], axis=1),
        helper.make_node("Relu", ["h"], ["z"]),
    ]
    m = make_model(nodes, {"a": ["N", 3], "b": ["N", 2]}, {"y": None, "z": None}, {"W": rnd(3, 4)})
    g = check_against_ort(m, {"a": rnd(2, 3), "b": rnd(2, 2)})
    assert g.inputs == {"a": (3,), "b": (2,)} and g.outputs == ["y", "z"]


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_mean_over_spatial_axes_is_global_avgpool(keepdims):
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=keepdims)]
    m = make_model(nodes, {"x": ["N", 3, 4, 2]}, {"y": None})
    g = check_against_ort(m, {"x": rnd(2, 3, 4, 2)})
    assert ops_of(g)[0] == "global_avgpool"


def test_prelu_with_shared_slope_and_sum():
    nodes = [
        helper.make_node("PRelu", ["x", "slope"], ["p"]),
        helper.make_node("Sum", ["x", "p", "x"], ["y"]),
    ]
    m = make_model(nodes, {"x": ["N", 5]}, {"y": None}, {"slope": np.full(5, 0.3, np.float32)})
    g = check_against_ort(m, {"x": rnd(4, 5)})
    assert ops_of(g) == ["leaky_relu", "add"]


def test_static_batch_of_one_with_reshape():
    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["r"]),
        helper.make_node("Gemm", ["r", "W"], ["y"], transB=1),
    ]
    inits = {"s": np.array([1, -1], dtype=np.int64), "W": rnd(3, 8)}
    m = make_model(nodes, {"x": [1, 2, 4]}, {"y": [1, 3]}, inits)
    g = check_against_ort(m, {"x": rnd(1, 2, 4)})
    assert g.inputs == {"x": (2, 4)} and ops_of(g) == ["reshape", "dense"]
