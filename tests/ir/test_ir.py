import numpy as np
import pytest

from lightspeed.errors import ModelError, ShapeError, UnsupportedOpError
from lightspeed.ir import Graph, Node, infer_shapes
from tests.conftest import make_cnn, make_mlp


def test_mlp_shapes():
    g = make_mlp()
    assert g.shapes["x"] == (16,)
    assert g.shapes["h0"] == (64,)
    assert g.shapes[g.outputs[0]] == (5,)


def test_cnn_shapes():
    g = make_cnn()
    assert g.shapes["c1"] == (4, 8, 8)
    assert g.shapes["p1"] == (4, 4, 4)
    assert g.shapes["c2"] == (4, 2, 2)
    assert g.shapes["g"] == (4, 1, 1)
    assert g.shapes["y"] == (3,)


def test_nodes_are_sorted_topologically():
    g = make_mlp()
    shuffled = Graph("m", dict(g.inputs), list(g.outputs), list(reversed(g.nodes)))
    infer_shapes(shuffled)
    assert [n.name for n in shuffled.nodes] == [n.name for n in g.nodes]


def test_dangling_tensor_is_reported():
    g = Graph("m", {"x": (4,)}, ["y"], [Node("r", "relu", ["nope"], ["y"])])
    with pytest.raises(ModelError, match="nope"):
        infer_shapes(g)


def test_unknown_op_names_alternatives():
    g = Graph("m", {"x": (4,)}, ["y"], [Node("r", "swish", ["x"], ["y"])])
    with pytest.raises(UnsupportedOpError, match="supported ops"):
        infer_shapes(g)


def test_dense_shape_mismatch_names_node():
    w = np.zeros((3, 2))
    g = Graph("m", {"x": (4,)}, ["y"], [Node("fc", "dense", ["x"], ["y"], {}, {"weight": w})])
    with pytest.raises(ShapeError, match="fc"):
        infer_shapes(g)


def test_dynamic_input_shape_refused():
    g = Graph("m", {"x": (0,)}, ["y"], [Node("r", "relu", ["x"], ["y"])])
    with pytest.raises(ShapeError, match="--input-shape"):
        infer_shapes(g)


def test_duplicate_node_names_refused():
    g = Graph(
        "m", {"x": (4,)}, ["z"], [Node("r", "relu", ["x"], ["y"]), Node("r", "relu", ["y"], ["z"])]
    )
    with pytest.raises(ModelError, match="duplicate"):
        infer_shapes(g)
