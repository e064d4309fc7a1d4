"""Each kind of bad model input gets its specific one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from lightspeed.errors import ModelError, ShapeError, UnsupportedOpError
from lightspeed.frontends import load_model
from tests.frontends.helpers import make_model, rnd


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")


def test_malformed_file(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff\xff")
    with pytest.raises(ModelError, match=r"not a readable ONNX model|no ONNX graph"):
        load_model(p)


def test_non_onnx_suffix(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"not an ONNX model.*nn.Module"):
        load_model(p)
    other = tmp_path / "model.bin"
    other.write_bytes(b"\x00\x01binary junk")
    with pytest.raises(ModelError, match=r"not a readable ONNX model|no ONNX graph"):
        load_model(other)


def test_unsupported_source_type():
    with pytest.raises(ModelError, match="cannot load a model from a dict"):
        load_model({"a": 1})


def test_unsupported_op_names_op_node_and_alternative():
    nodes = [helper.make_node("Celu", ["x"], ["y"], name="act/celu1")]
    m = make_model(nodes, {"x": ["N", 4]}, {"y": None})
    with pytest.raises(UnsupportedOpError) as err:
        load_model(m)
    msg = str(err.value)
    assert "Celu" in msg and "act_celu1" in msg and "LeakyRelu" in msg


def test_unknown_op_lists_supported_ops():
    nodes = [helper.make_node("Exp", ["x"], ["y"], name="e")]
    m = make_model(nodes, {"x": ["N", 4]}, {"y": None})
    with pytest.raises(UnsupportedOpError, match=r"Exp.*Softmax"):
        load_model(m)


def test_custom_domain_op():
    nodes = [helper.make_node("Foo", ["x"], ["y"], name="f", domain="my.ops")]
    m = make_model(nodes, {"x": ["N", 4]}, {"y": None}, extra_opsets=["my.ops"])
    with pytest.raises(UnsupportedOpError, match=r"my.ops.Foo"):
        load_model(m)


def test_dynamic_dims_need_input_shape():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = make_model(nodes, {"x": ["N", "C", 8]}, {"y": None})
    with pytest.raises(ShapeError, match="--input-shape"):
        load_model(m)
    g = load_model(m, input_shape=(3, 8))
    assert g.inputs == {"x": (3, 8)}
    assert load_model(m, input_shape="3,8").inputs == {"x": (3, 8)}
    assert load_model(m, input_shape={"x": [3, 8]}).inputs == {"x": (3, 8)}


def test_input_shape_contradicting_model():
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 4]}, {"y": None})
    with pytest.raises(ShapeError, match="contradicts"):
        load_model(m, input_shape=(5,))
    with pytest.raises(ShapeError, match="without the batch axis"):
        load_model(m, input_shape=(1, 4))
    with pytest.raises(ShapeError, match="model inputs are x"):
        load_model(m, input_shape={"z": (4,)})


def test_transpose_moving_batch_is_refused():
    m = make_model(
        [helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])], {"x": ["N", 4]}, {"y": None}
    )
    with pytest.raises(UnsupportedOpError, match="batch"):
        load_model(m)


def test_reshape_dropping_batch_is_refused():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"])]
    m = make_model(nodes, {"x": ["N", 4]}, {"y": None}, {"s": np.array([-1], dtype=np.int64)})
    with pytest.raises(ShapeError, match="batch"):
        load_model(m)


def test_softmax_on_non_last_axis_is_refused():
    m = make_model(
        [helper.make_node("Softmax", ["x"], ["y"], axis=1)], {"x": ["N", 3, 4]}, {"y": None}
    )
    with pytest.raises(UnsupportedOpError, match="last axis"):
        load_model(m)


def test_matmul_of_a_vector_tensor_is_refused_with_the_form():
    """Two computed tensors are a matmul node now; a per-sample vector operand is not."""
    from lightspeed.errors import ShapeError

    m = make_model(
        [helper.make_node("MatMul", ["x", "x"], ["y"], name="mm")], {"x": ["N", 4, 4]}, {"y": None}
    )
    assert [n.op for n in load_model(m).nodes] == ["matmul"]
    v = make_model(
        [helper.make_node("MatMul", ["x", "z"], ["y"], name="mv")],
        {"x": ["N", 3, 4], "z": ["N", 4]},
        {"y": None},
    )
    with pytest.raises(ShapeError, match=r"mv.*at least 2 axes"):
        load_model(v)


def test_non_channel_constant_add_is_refused():
    nodes = [helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    m = make_model(nodes, {"x": ["N", 3, 4]}, {"y": None}, {"c": rnd(3, 4)})
    with pytest.raises(UnsupportedOpError, match="channel"):
        load_model(m)


def test_batch_dependent_constant_is_refused():
    nodes = [helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    m = make_model(nodes, {"x": ["N", 4]}, {"y": None}, {"c": rnd(2, 4)})
    with pytest.raises(UnsupportedOpError, match="grow"):
        load_model(m)
