"""What a user reads when a layer or a form is not supported, for models real exporters write."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import helper

from lightspeed.errors import UnsupportedOpError
from lightspeed.frontends import load_model
from tests.frontends.helpers import check_against_ort, make_model, rnd

torch = pytest.importorskip("torch")
nn = torch.nn


def _export(module, shape, tmp_path, opset=17):
    """torch.onnx.export (the TorchScript exporter) with a dynamic batch, as users export."""
    path = tmp_path / f"{type(module).__name__}.onnx"
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.randn(1, *shape),), str(path), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=opset, dynamo=False,
        )  # fmt: skip
    return path


class _Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


class _Attention(nn.Module):
    """Scaled dot-product self-attention written out (what most exports contain)."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        s = self.q(x) @ self.k(x).transpose(1, 2) / 8**0.5
        return (torch.softmax(s, dim=-1) @ self.v(x)).flatten(1)


class _Norm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.InstanceNorm1d(4)

    def forward(self, x):
        return self.norm(self.fc(x))


@pytest.mark.parametrize(
    ("module", "shape", "opset", "pattern"),
    [
        (_Recurrent(nn.RNN), (5, 4), 17, r"'/rnn/RNN'.*recurrent layer simple RNN.*not supported"),
        (_Norm(), (4, 8), 17, r"InstanceNormalization.*BatchNormalization"),
    ],
    ids=["rnn", "instancenorm"],
)
def test_unsupported_layers_are_named(module, shape, opset, pattern, tmp_path):
    path = _export(module, shape, tmp_path, opset)
    with pytest.raises(UnsupportedOpError, match=pattern) as err:
        load_model(path)
    assert "ConstantOfShape" not in str(err.value) and "Gemm" not in str(err.value)


def test_attention_written_out_imports_through_the_matmul_op(tmp_path):
    """Once refused by name, now compiled: the scores and values are matmul nodes."""
    from tests.frontends.helpers import run_ir

    m = _Attention().eval()
    g = load_model(_export(m, (5, 8), tmp_path, 17))
    assert [n.op for n in g.nodes].count("matmul") == 2
    x = np.random.default_rng(0).normal(0, 1, (20, 5, 8)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], want, atol=1e-5)


def test_multihead_attention_module_is_written_out():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.att(x, x, x, need_weights=False)[0].flatten(1)

    g = load_model(Net().eval(), input_shape=(5, 8))  # refused by name before; now compiled
    assert [n.op for n in g.nodes].count("matmul") == 2


def test_flatten_axis0_with_static_batch_one_is_axis1():
    """Keras' ONNX exports flatten with axis=0 for a model saved with batch 1."""
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=0, name="flat"),
        helper.make_node("Gemm", ["f", "W"], ["y"], name="fc"),
    ]
    m = make_model(nodes, {"x": [1, 3, 4]}, {"y": [1, 2]}, {"W": rnd(12, 2)})
    g = check_against_ort(m, {"x": rnd(1, 3, 4)})
    assert [n.op for n in g.nodes] == ["flatten", "dense"]


def test_flatten_axis0_with_a_batch_says_why():
    m = make_model(
        [helper.make_node("Flatten", ["x"], ["y"], axis=0, name="flat")], {"x": ["N", 3, 4]},
        {"y": None},
    )  # fmt: skip
    with pytest.raises(UnsupportedOpError) as err:
        load_model(m)
    msg = str(err.value)
    assert "'flat'" in msg and "axis=0 merges the batch axis" in msg and "batch size 1" in msg
    assert "Gemm" not in msg  # no list of every supported op


def test_transpose_without_perm_says_which_form():
    m = make_model(
        [helper.make_node("Transpose", ["x"], ["y"], name="tr")], {"x": [1, 3, 4]}, {"y": None}
    )
    with pytest.raises(UnsupportedOpError) as err:
        load_model(m)
    msg = str(err.value)
    assert "no perm (reverse all 3 axes)" in msg and "position 2" in msg and "perm=[0, ...]" in msg


def test_custom_domain_op_does_not_list_its_standard_namesake():
    # channels-last Conv/MaxPool/BatchNormalization import; Gemm in that domain does not
    node = helper.make_node(
        "Gemm", ["x", "W"], ["y"], name="c", domain="qonnx.custom_op.channels_last"
    )
    m = make_model([node], {"x": ["N", 2]}, {"y": None}, {"W": np.zeros((2, 2), "f")},
                   extra_opsets=["qonnx.custom_op.channels_last"])  # fmt: skip
    with pytest.raises(UnsupportedOpError) as err:
        load_model(m)
    msg = str(err.value)
    assert "custom-domain" in msg and "'c'" in msg
    assert "qonnx.custom_op.channels_last.Gemm" in msg and "MatMul" not in msg


def test_depth_to_space_in_an_unsupported_form_names_the_form():
    m = make_model(
        [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, name="d2s")],
        {"x": ["N", 4, 6]}, {"y": None},
    )  # fmt: skip
    with pytest.raises(UnsupportedOpError, match=r"'d2s'.*DepthToSpace.*not in this form") as err:
        load_model(m)
    assert "Gemm" not in str(err.value)
