"""matmul of two activations: fixed contract, float vs onnxruntime, attention from torch, RTL, HLS."""

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

from tests.frontends.helpers import check_against_ort, make_model, rnd  # noqa: E402
from tests.ops.test_elementwise import _skip_without, _vectors, ref_cast  # noqa: E402

TA, TB = FixedType(6, 2, True), FixedType(5, 1, True)


def _literal(a, b, acc: FixedType, res: FixedType):
    """The MAC contract per output with Fractions: each product and partial sum cast."""
    out = np.zeros((a.shape[0], a.shape[1], b.shape[2]), dtype=np.int64)
    for s in range(a.shape[0]):
        for i in range(a.shape[1]):
            for j in range(b.shape[2]):
                acc_v = Fraction(0)
                for k in range(a.shape[2]):
                    prod = Fraction(int(a[s, i, k]), 16) * Fraction(int(b[s, k, j]), 16)
                    p = Fraction(ref_cast(prod, acc.width, acc.integer, True, acc.rounding == "RND",
                                          acc.overflow == "SAT"), 2**acc.frac)  # fmt: skip
                    acc_v = Fraction(ref_cast(acc_v + p, acc.width, acc.integer, True, False,
                                              acc.overflow == "SAT"), 2**acc.frac)  # fmt: skip
                out[s, i, j] = ref_cast(acc_v, res.width, res.integer, True,
                                        res.rounding == "RND", res.overflow == "SAT")  # fmt: skip
    return out


@pytest.mark.parametrize(
    "acc",
    [
        FixedType(16, 6, True),
        FixedType(7, 2, True, "TRN", "SAT"),
        FixedType(6, 1, True, "RND", "WRAP"),
    ],
    ids=str,
)
def test_fixed_contract_matches_literal_reference(acc):
    rng = np.random.default_rng(0)
    a = rng.integers(TA.min_int, TA.max_int + 1, (40, 3, 5))
    b = rng.integers(TB.min_int, TB.max_int + 1, (40, 5, 2))
    res = FixedType(8, 3, True, "RND", "SAT")
    node = Node("n", "matmul", ["a", "b"], ["y"], {"k": 5})
    (y,) = get_op("matmul").run_fixed(
        node, [Fx(a, TA), Fx(b, TB)], {"accum": acc, "result": res}, {}
    )
    np.testing.assert_array_equal(y.m, _literal(a, b, acc, res))


def test_trained_precision_is_exact():
    g = infer_shapes(
        Graph("t", {"a": (3, 5), "b": (5, 2)}, ["y"],
              [Node("m", "matmul", ["a", "b"], ["y"], {"k": 5})])
    )  # fmt: skip
    q = lightspeed.quantize(g, "trained", input_types={"a": str(TA), "b": str(TB)})
    rng = np.random.default_rng(1)
    a = rng.integers(TA.min_int, TA.max_int + 1, (30, 3, 5)) / 16
    b = rng.integers(TB.min_int, TB.max_int + 1, (30, 5, 2)) / 16
    np.testing.assert_array_equal(q.predict({"a": a, "b": b})["y"], a @ b)


def _attention_onnx():
    """Single-head attention on 4 tokens of 6 features: softmax(Q K^T / sqrt d) V."""
    rng = np.random.default_rng(3)
    w = {n: rng.normal(0, 0.4, (6, 6)).astype(np.float32) for n in ("wq", "wk", "wv")}
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    inits = {**w, "scale": np.array(6**-0.5, dtype=np.float32)}
    return make_model(nodes, {"x": [None, 4, 6]}, {"y": [None, 4, 6]}, inits=inits)


def test_attention_float_matches_onnxruntime():
    g = check_against_ort(_attention_onnx(), {"x": rnd(20, 4, 6, lo=-2, hi=2)})
    assert [n.op for n in g.nodes].count("matmul") == 2


def test_attention_auto_precision_close_to_float():
    from tests.frontends.helpers import run_ir

    g = lightspeed.load(_attention_onnx())
    X = np.random.default_rng(0).normal(0, 1, (300, 4, 6))
    q = lightspeed.quantize(g, "auto", X)
    (ref,) = run_ir(g, {"x": X})
    np.testing.assert_allclose(q.predict(X), ref, atol=0.02)


def test_torch_attention_scores_export():
    torch = pytest.importorskip("torch")

    class Scores(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = torch.nn.Linear(6, 6, bias=False)
            self.k = torch.nn.Linear(6, 6, bias=False)

        def forward(self, x):
            return torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) / 6**0.5, dim=-1)

    torch.manual_seed(0)
    m = Scores().eval()
    x = np.random.default_rng(0).normal(0, 1, (50, 4, 6)).astype(np.float32)
    g = lightspeed.load(m, input_shape=(4, 6))
    from tests.frontends.helpers import run_ir

    with torch.no_grad():
        want = m(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], want, atol=1e-5)


def _fw_model():
    nodes = [
        Node("qk", "matmul", ["a", "b"], ["s"], {"k": 3}),
        Node("sv", "matmul", ["s", "c"], ["y"], {"k": 2}),
    ]
    g = infer_shapes(Graph("mm", {"a": (2, 3), "b": (3, 2), "c": (2, 2)}, ["y"], nodes))
    rng = np.random.default_rng(4)
    X = {"a": rng.normal(0, 1, (300, 2, 3)), "b": rng.normal(0, 1, (300, 3, 2)),
         "c": rng.normal(0, 1, (300, 2, 2))}  # fmt: skip
    from lightspeed.quantize import AutoOptions

    return lightspeed.quantize(g, "auto", X, options=AutoOptions(frac_bits=5))


def test_rtl_bit_exact(tmp_path):
    _skip_without("find_verilator", "find_make", "find_cxx")
    from lightspeed import firmware

    q = _fw_model()
    r = firmware.check(firmware.generate(q, tmp_path / "fw"), _vectors(q, 2000), q=q)
    assert r["exact"], r["mismatches"]


def test_hls_csim_bit_exact(tmp_path):
    _skip_without("find_ap_types", "find_cxx")
    from lightspeed import firmware

    q = _fw_model()
    r = firmware.check(firmware.generate(q, tmp_path / "fw", target="hls"), _vectors(q, 2000), q=q)
    assert r["exact"], r["mismatches"]


# -- fixed graphs: constant receiver/sender matrices on the left (interaction networks)


def _interaction_network():
    torch = pytest.importorskip("torch")

    class IN(torch.nn.Module):
        """JEDI-net-style: edges from fixed receiver/sender matrices, messages summed back."""

        def __init__(self, n=4, p=3):
            super().__init__()
            pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
            rr, rs = torch.zeros(len(pairs), n), torch.zeros(len(pairs), n)
            for e, (i, j) in enumerate(pairs):
                rr[e, i], rs[e, j] = 1, 1
            self.register_buffer("rr", rr)
            self.register_buffer("rs", rs)
            self.register_buffer("rrt", rr.t().contiguous())
            self.register_buffer("ones", torch.ones(1, n))
            lin = torch.nn.Linear
            self.fr = torch.nn.Sequential(lin(2 * p, 8), torch.nn.ReLU(), lin(8, 4))
            self.fo = torch.nn.Sequential(lin(p + 4, 8), torch.nn.ReLU(), lin(8, 5))

        def forward(self, x):  # (B, objects, features)
            e = self.fr(torch.cat([self.rr @ x, self.rs @ x], dim=-1))  # edge network
            o = self.fo(torch.cat([x, self.rrt @ e], dim=-1))  # node network on aggregates
            return o.sum(dim=1)  # sum over objects (ONNX ReduceSum)

    torch.manual_seed(0)
    return torch, IN().eval()


def test_interaction_network_with_a_fixed_graph():
    from tests.frontends.helpers import run_ir

    torch, m = _interaction_network()
    g = lightspeed.load(m, input_shape=(4, 3))
    x = np.random.default_rng(0).normal(0, 1, (300, 4, 3)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], want, atol=1e-5)
    q = lightspeed.quantize(g, "auto", x)
    assert (q.predict(x).argmax(1) == want.argmax(1)).mean() >= 0.99


def test_interaction_network_rtl_bit_exact(tmp_path):
    _skip_without("find_verilator", "find_make", "find_cxx")
    from lightspeed import firmware
    from lightspeed.quantize import AutoOptions

    _, m = _interaction_network()
    g = lightspeed.load(m, input_shape=(4, 3))
    x = np.random.default_rng(1).normal(0, 1, (300, 4, 3))
    q = lightspeed.quantize(g, "auto", x, options=AutoOptions(weight_bits=8, frac_bits=6))
    r = firmware.check(firmware.generate(q, tmp_path / "fw"), _vectors(q, 1000), q=q)
    assert r["exact"], r["mismatches"]


@pytest.mark.parametrize(("axes", "keep"), [([1], 1), ([2], 0), ([-1, 1], 1), ([1, 2], 0)])
def test_reduce_sum_over_non_batch_axes(axes, keep):
    m = make_model(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=keep)],
        {"x": [None, 3, 4, 5]},
        {"y": None},
        inits={"axes": np.array(axes, dtype=np.int64)},
    )
    g = check_against_ort(m, {"x": rnd(6, 3, 4, 5)})
    assert {n.op for n in g.nodes} <= {"dense", "reshape", "transpose"}


def test_reduce_sum_over_the_batch_is_refused():
    from lightspeed.errors import UnsupportedOpError

    m = make_model(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="rs")],
        {"x": [None, 3]},
        {"y": None},
        inits={"axes": np.array([0], dtype=np.int64)},
    )
    with pytest.raises(UnsupportedOpError, match=r"rs.*batch axis"):
        lightspeed.load(m)
