"""hard_swish: fixed contract, float (vs onnxruntime and torch), auto precision, QONNX, RTL, HLS."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import lightspeed
from lightspeed.fixed import FixedType
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

from tests.firmware.check import assert_firmware_exact  # noqa: E402
from tests.frontends.helpers import check_against_ort, make_model, run_ir  # noqa: E402
from tests.ops.test_smooth import ref_cast  # noqa: E402

# -- (1) the fixed contract against a literal reference

INPUTS = [FixedType(9, 4, True), FixedType(6, 8, True), FixedType(7, 2, False)]
RESULTS = [FixedType(10, 4, True, "RND", "SAT"), FixedType(7, 2, True, "TRN", "WRAP")]


def ref_hard_swish(m: int, t_in: FixedType, k: Fraction, res: FixedType) -> int:
    x = Fraction(m) / Fraction(2) ** t_in.frac
    if x <= -3:
        return ref_cast(Fraction(0), res)
    if x >= 3:
        return ref_cast(x, res)
    return ref_cast(x * (x + 3) * k, res)


@pytest.mark.parametrize("res", RESULTS, ids=str)
@pytest.mark.parametrize("t_in", INPUTS, ids=str)
def test_fixed_contract_matches_literal_reference(t_in, res):
    node = Node("n", "hard_swish", ["x"], ["y"])
    k_t = FixedType(8, -2, False, "RND", "SAT")
    prec = {"param": k_t, "result": res}
    impl = get_op("hard_swish")
    q = impl.quantize_params(node, prec)
    assert int(q["k"]) == round(1024 / 6)  # 171 / 1024
    m = np.arange(t_in.min_int, t_in.max_int + 1, dtype=np.int64)
    (y,) = impl.run_fixed(node, [Fx(m, t_in)], prec, q)
    k = Fraction(int(q["k"]), 2**k_t.frac)
    for i, mi in enumerate(m.tolist()):
        assert int(y.m[i]) == ref_hard_swish(mi, t_in, k, res), mi


# -- (2) float semantics against onnxruntime and torch's export


def _onnx_model():
    nodes = [helper.make_node("HardSwish", ["x"], ["y"])]
    return make_model(nodes, {"x": [None, 6]}, {"y": [None, 6]}, opset=14)


def test_float_matches_onnxruntime():
    x = np.random.default_rng(0).uniform(-5, 5, (60, 6)).astype(np.float32)
    g = check_against_ort(_onnx_model(), {"x": x})
    assert [n.op for n in g.nodes] == ["hard_swish"]


def test_torch_hardswish():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Hardswish()).eval()
    g = lightspeed.load(model, input_shape=(6,))
    assert [n.op for n in g.nodes] == ["dense", "hard_swish"]
    x = np.random.default_rng(1).normal(0, 3, (100, 6)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], ref, atol=1e-5)


# -- (3) auto precision, (4) QONNX round trip, (7) trained mode


def test_auto_precision_close_to_float():
    from lightspeed.frontends import load_model

    g = load_model(_onnx_model())
    x = np.random.default_rng(1).normal(0, 3, (600, 6))
    q = lightspeed.quantize(g, "auto", x)
    prec = q.precision[q.graph.nodes[0].name]
    assert prec["param"].width == 16 and prec["result"].signed
    np.testing.assert_allclose(q.predict(x), q.predict_float(x), atol=4 * 2.0**-10)


def test_qonnx_round_trip_bit_exact(tmp_path):
    from lightspeed.frontends import load_model
    from lightspeed.frontends.qonnx_export import export_qonnx

    g = load_model(_onnx_model())
    x = np.random.default_rng(1).normal(0, 3, (300, 6))
    q = lightspeed.quantize(g, "auto", x)
    g2 = lightspeed.load(export_qonnx(q, tmp_path / "m.onnx"))
    assert "hard_swish" in {n.op for n in g2.nodes}
    q2 = lightspeed.quantize(g2, "auto", x[:10])
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))


@pytest.mark.parametrize(
    "t_in", ["ap_fixed<8,3>", "ap_fixed<6,8>", "ap_ufixed<7,2>", "ap_fixed<10,2>"]
)
def test_trained_mode_types_exactly(t_in):
    from lightspeed.fixed import parse_type, to_float

    g = infer_shapes(Graph("t", {"x": (4,)}, ["y"], [Node("my_hs", "hard_swish", ["x"], ["y"])]))
    q = lightspeed.quantize(g, "trained", input_types={"x": t_in})
    t = parse_type(t_in)
    m = np.arange(t.min_int, t.max_int + 1)
    x = to_float(m, t)
    k_t = q.precision["my_hs"]["param"]
    assert k_t.width == 16
    k = Fraction(int(q.qparams["my_hs"]["k"]), 2**k_t.frac)
    res = q.precision["my_hs"]["result"]
    xs = [Fraction(int(mi)) / Fraction(2) ** t.frac for mi in m]
    exact = [float(0 if v <= -3 else v if v >= 3 else v * (v + 3) * k) for v in xs]
    got = q.predict(np.repeat(x[:, None], 4, axis=1))[:, 0]
    np.testing.assert_array_equal(got, exact)
    assert res.min_value <= min(exact) and res.max_value >= max(exact)


# -- (5) RTL and (6) HLS


def _fw_model():
    rng = np.random.default_rng(0)
    nodes = [
        Node("fc0", "dense", ["x"], ["h"], {}, {"weight": rng.normal(0, 1.5, (8, 8)), "bias": rng.normal(0, 0.1, 8)}),
        Node("hs", "hard_swish", ["h"], ["y"]),
    ]  # fmt: skip
    g = infer_shapes(Graph("hswish", {"x": (8,)}, ["y"], nodes))
    from lightspeed.quantize import AutoOptions

    X = np.random.default_rng(2).normal(0, 1, (500, 8))
    return lightspeed.quantize(g, "auto", X, options=AutoOptions(weight_bits=8, frac_bits=6))


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_firmware_bit_exact(target, tmp_path):

    q = _fw_model()
    assert_firmware_exact(q, tmp_path, target, n=3000)


def test_trained_torch_model_argmax_agreement():
    """A small trained torch MLP with GELU, Hardswish and Softsign: auto precision keeps >= 99%."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (3000, 8)).astype(np.float32)
    mix = np.tanh(x) @ rng.normal(0, 1, (8, 4)) + 0.3 * (x**2) @ rng.normal(0, 1, (8, 4))
    labels = torch.from_numpy(np.argmax(mix, 1)[:2000])
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 24), torch.nn.GELU(), torch.nn.Linear(24, 16), torch.nn.Hardswish(),
        torch.nn.Linear(16, 16), torch.nn.Softsign(), torch.nn.Linear(16, 4),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xt = torch.from_numpy(x[:2000])
    for _ in range(15):
        for i in range(0, 2000, 200):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(
                model(xt[i : i + 200]), labels[i : i + 200]
            ).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x[2000:])).numpy()
    g = lightspeed.load(model, input_shape=(8,))
    assert [n.op for n in g.nodes][1::2] == ["gelu", "hard_swish", "softsign"]
    q = lightspeed.quantize(g, "auto", x[:500])
    assert (q.predict(x[2000:]).argmax(1) == ref.argmax(1)).mean() >= 0.99
