"""QONNX export of a quantized model and the bit-exact round trip through the importer."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lightspeed
from lightspeed.frontends.qonnx_export import META_KEY, export_qonnx
from tests.frontends.helpers import make_model, rnd

torch = pytest.importorskip("torch")
nn = torch.nn


class _Net(nn.Module):
    """Every exportable op family: conv+standalone BN, pools, skip add/concat, tables."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(8 * 2 * 2, 12)
        self.fc2 = nn.Linear(12, 4)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        r = self.bn(h) + self.c2(h)  # BN on a shared tensor stays standalone
        c = torch.cat([nn.functional.max_pool2d(r, 2), nn.functional.avg_pool2d(h, 2)], dim=1)
        c = nn.functional.hardtanh(c, -2.0, 2.0)
        z = nn.functional.leaky_relu(
            self.fc1(torch.flatten(nn.functional.max_pool2d(c, 2), 1)), 0.1
        )
        return torch.softmax(self.fc2(torch.sigmoid(z) * torch.tanh(z)), dim=-1)


def tstr(node):
    """A node's own types as strings."""
    return {r: str(t) for r, t in node.types.items()}


def _net():
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 2)
    return net


@pytest.mark.parametrize(
    "precision", ["auto", "ap_fixed<16,6>", "ap_fixed<12,5,RND,SAT>", "ap_fixed<10,3,TRN,WRAP>"]
)
def test_round_trip_is_bit_exact(tmp_path, precision):
    g = lightspeed.load(_net(), input_shape=(2, 8, 8))
    ops = {n.op for n in g.nodes}
    assert {"conv", "batchnorm", "add", "concat", "maxpool", "avgpool", "clip", "leaky_relu"} <= ops
    assert {"sigmoid", "tanh", "mul", "softmax", "dense", "flatten"} <= ops
    x = np.random.default_rng(1).normal(size=(120, 2, 8, 8))
    q = lightspeed.quantize(g, precision=precision, calibration=x)
    path = export_qonnx(q, tmp_path / "m.onnx")
    g2 = lightspeed.load(path)
    q2 = lightspeed.quantize(g2, precision="auto", calibration=x[:10])
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))
    # every original layer kept its full precision (accumulators and tables included)
    for node in q.graph.nodes:
        assert {r: str(t) for r, t in q2.precision[node.name].items()} == {
            r: str(t) for r, t in q.precision[node.name].items()
        }
    assert q2.input_types == q.input_types


def test_export_holds_quant_nodes_and_metadata(tmp_path):
    import onnx

    g = lightspeed.load(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(), input_shape=(4,))
    q = lightspeed.quantize(g, precision="ap_fixed<8,3,RND_CONV,SAT_SYM>")
    m = onnx.load(str(export_qonnx(q, tmp_path / "m.onnx")))
    quants = [n for n in m.graph.node if n.op_type == "Quant"]
    # input, weight, bias, dense result, relu result
    assert len(quants) == 5 and all(n.domain == "qonnx.custom_op.general" for n in quants)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in quants[0].attribute}
    assert attrs == {"signed": 1, "narrow": 1, "rounding_mode": b"ROUND"}
    meta = json.loads({p.key: p.value for p in m.metadata_props}[META_KEY])
    dense = next(n.name for n in q.graph.nodes if n.op == "dense")
    assert meta["nodes"][dense]["precision"]["accum"] == str(q.precision[dense]["accum"])


def test_export_matches_qonnx_executor_where_qonnx_is_exact(tmp_path):
    """RND_CONV/SAT types with exact accumulators: QONNX's own float execution gives our bits."""
    pytest.importorskip("qonnx")
    import onnx

    from lightspeed.ops import AutoOptions
    from tests.frontends.test_qonnx_import import qonnx_reference

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
    g = lightspeed.load(net, input_shape=(6,))
    x = np.random.default_rng(2).normal(size=(64, 6))
    opts = AutoOptions(weight_bits=8, frac_bits=6, rounding="RND_CONV", overflow="SAT")
    q = lightspeed.quantize(g, precision="auto", calibration=x, options=opts)
    path = export_qonnx(q, tmp_path / "m.onnx")
    ref = qonnx_reference(onnx.load(str(path)), {"input": x.astype(np.float32)})[0]
    np.testing.assert_array_equal(ref.astype(np.float64), q.predict(x))


def test_wide_constants_are_written_in_float64(tmp_path):
    import onnx

    nodes = [onnx.helper.make_node("Gemm", ["x", "W", "B"], ["y"])]
    w = rnd(3, 2).astype(np.float64) + 2.0**-30  # needs more than float32's 24 bits
    model = make_model(nodes, {"x": ["N", 3]}, {"y": None}, {"W": w, "B": rnd(2)})
    g = lightspeed.load(model)
    q = lightspeed.quantize(g, precision="ap_fixed<40,8>")
    m = onnx.load(str(export_qonnx(q, tmp_path / "m.onnx")))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    q2 = lightspeed.quantize(lightspeed.load(m), precision="auto", calibration=rnd(5, 3))
    x = rnd(50, 3, lo=-4, hi=4)
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))


def test_qonnx_model_round_trip_keeps_trained_types(tmp_path):
    """QONNX in (trained types) -> quantize -> QONNX out -> in again: same bits, same types."""
    from tests.frontends.test_qonnx_import import _mlp

    g = lightspeed.load(_mlp(per_channel=True))
    x = np.random.default_rng(5).normal(size=(200, 8))
    q = lightspeed.quantize(g, precision="auto", calibration=x)
    assert str(q.precision["fc1"]["weight"]) == tstr(g.node("fc1"))["weight"]
    assert str(q.input_types["x"]) == "ap_fixed<8,4,RND_CONV,SAT>"  # from the input's Quant
    g2 = lightspeed.load(export_qonnx(q, tmp_path / "m.onnx"))
    q2 = lightspeed.quantize(g2, precision="auto", calibration=x[:5])
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))
