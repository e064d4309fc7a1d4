"""gather_elements / scatter_add: contract, torch export (fixed graphs and edge-list inputs),
index checks (emulator and server), RTL and HLS bit-exact."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import InputError, ModelError, UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.ir import Node
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from tests.firmware.check import assert_firmware_exact  # noqa: E402
from tests.ops.test_elementwise import ref_cast  # noqa: E402

N, F, E = 4, 3, 7
T = FixedType(7, 3, True, "RND", "SAT")


# -- (1) the contract against literal per-element references


def test_gather_elements_literal():
    rng = np.random.default_rng(0)
    x = rng.integers(-60, 60, (5, N, F))
    idx = rng.integers(0, N, (5, E, F))
    node = Node("g", "gather_elements", ["x", "i"], ["y"], {"axis": 0})
    (y,) = get_op("gather_elements").run_fixed(
        node, [Fx(x, T), Fx(idx, FixedType(2, 2, False))], {}, {}
    )
    assert y.t == T
    for b, e, f in np.ndindex(*y.m.shape):
        assert y.m[b, e, f] == x[b, idx[b, e, f], f]
    const = Node("g", "gather_elements", ["x"], ["y"], {"axis": 0, "indices": idx[0].tolist()})
    (yc,) = get_op("gather_elements").run_fixed(const, [Fx(x, T)], {}, {})
    for b, e, f in np.ndindex(*yc.m.shape):
        assert yc.m[b, e, f] == x[b, idx[0, e, f], f]


@pytest.mark.parametrize(
    "res", [FixedType(6, 4, True, "RND", "SAT"), FixedType(5, 3, True, "TRN", "WRAP")], ids=str
)
def test_scatter_add_exact_sum_then_cast(res):
    rng = np.random.default_rng(1)
    u = rng.integers(T.min_int, T.max_int + 1, (40, E, F))
    idx = rng.integers(0, N, (40, E, F))
    node = Node("s", "scatter_add", ["u", "i"], ["y"], {"axis": 0, "shape": [N, F], "count": E})
    (y,) = get_op("scatter_add").run_fixed(
        node, [Fx(u, T), Fx(idx, FixedType(2, 2, False))], {"result": res}, {}
    )
    for b, i, f in np.ndindex(40, N, F):
        exact = sum(Fraction(int(u[b, e, f]), 2**T.frac) for e in range(E) if idx[b, e, f] == i)
        want = ref_cast(exact, res.width, res.integer, True, res.rounding == "RND",
                        res.overflow == "SAT")  # fmt: skip
        assert y.m[b, i, f] == want


# -- (2) plain PyTorch interaction networks (PyTorch Geometric's MessagePassing written out)


def _export(module, args, names) -> onnx.ModelProto:
    buf = io.BytesIO()
    dyn = {n: {0: "batch"} for n in [*names, "y"]}
    with torch.no_grad():
        torch.onnx.export(module.eval(), args, buf, input_names=names, output_names=["y"],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)  # fmt: skip
    return onnx.load_from_string(buf.getvalue())


class EdgeListIN(torch.nn.Module):
    """Interaction network on a per-event edge list: messages from [x_receiver, x_sender],
    summed per receiver (scatter_add), node MLP on [x, aggregate], summed over nodes."""

    def __init__(self, p=F, h=6, d=4, out=3):
        super().__init__()
        lin = torch.nn.Linear
        self.edge = torch.nn.Sequential(lin(2 * p, h), torch.nn.ReLU(), lin(h, d))
        self.node = torch.nn.Sequential(lin(p + d, h), torch.nn.ReLU(), lin(h, out))
        self.d = d

    def forward(self, x, receivers, senders):
        p = x.shape[-1]
        xr = torch.gather(x, 1, receivers[:, :, None].expand(-1, -1, p))
        xs = torch.gather(x, 1, senders[:, :, None].expand(-1, -1, p))
        m = self.edge(torch.cat([xr, xs], dim=-1))
        agg = torch.zeros(x.shape[0], x.shape[1], self.d).scatter_add(
            1, receivers[:, :, None].expand(-1, -1, self.d), m
        )
        return self.node(torch.cat([x, agg], dim=-1)).sum(dim=1)


class FixedGraphIN(torch.nn.Module):
    """The same on a fixed fully connected graph: constant index lists."""

    def __init__(self, n=N, p=F, d=4):
        super().__init__()
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        self.register_buffer("recv", torch.tensor([i for i, _ in pairs]))
        self.register_buffer("send", torch.tensor([j for _, j in pairs]))
        self.edge = torch.nn.Sequential(
            torch.nn.Linear(2 * p, 6), torch.nn.ReLU(), torch.nn.Linear(6, d)
        )
        self.node = torch.nn.Linear(p + d, 3)

    def forward(self, x):
        m = self.edge(torch.cat([x[:, self.recv], x[:, self.send]], dim=-1))
        index = self.recv.view(1, -1, 1).expand_as(m)
        agg = m.new_zeros(m.shape[0], x.shape[1], m.shape[2]).scatter_add(1, index, m)
        return self.node(torch.cat([x, agg], dim=-1)).sum(dim=1)


def _edge_data(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(0, 1, (n, N, F)).astype(np.float32),
        "receivers": rng.integers(0, N, (n, E)),
        "senders": rng.integers(0, N, (n, E)),
    }


def _edge_model():
    torch.manual_seed(0)
    m = EdgeListIN()
    d = _edge_data(2)
    g = lightspeed.load(_export(m, tuple(torch.as_tensor(v) for v in d.values()), list(d)))
    return m, g


def test_edge_list_model_imports_typed_and_matches_torch():
    from lightspeed.emulate import run_float

    m, g = _edge_model()
    ops = [n.op for n in g.nodes]
    assert ops.count("gather_elements") == 2 and ops.count("scatter_add") == 1
    assert str(g.input_types["receivers"]) == str(FixedType(2, 2, False, "TRN", "SAT"))
    d = _edge_data(200, seed=1)
    with torch.no_grad():
        want = m(*(torch.as_tensor(v) for v in d.values())).numpy()
    np.testing.assert_allclose(run_float(g, d)["y"], want, atol=1e-5)
    q = lightspeed.quantize(g, "auto", d)
    np.testing.assert_allclose(q.predict(d)["y"], want, atol=0.05)


def test_fixed_graph_model_is_wiring_and_sums():
    from lightspeed.emulate import run_float

    torch.manual_seed(1)
    m = FixedGraphIN()
    g = lightspeed.load(_export(m, (torch.zeros(2, N, F),), ["x"]))
    assert {"take", "scatter_add"} <= {n.op for n in g.nodes}
    assert not g.input_types
    x = np.random.default_rng(2).normal(0, 1, (100, N, F)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(run_float(g, {"x": x})["y"], want, atol=1e-5)


def test_trained_scatter_is_exact():
    node = Node("s", "scatter_add", ["u"], ["y"],
                {"axis": 0, "shape": [2, 1], "indices": [[0], [0], [1]], "count": 2})  # fmt: skip
    from lightspeed.ir import Graph, infer_shapes

    g = infer_shapes(Graph("s", {"u": (3, 1)}, ["y"], [node]))
    q = lightspeed.quantize(g, "trained", input_types={"u": "ap_fixed<6,2>"})
    u = np.random.default_rng(3).integers(-32, 32, (50, 3, 1)) / 16
    y = q.predict(u)
    np.testing.assert_array_equal(y[:, 0], u[:, 0] + u[:, 1])
    np.testing.assert_array_equal(y[:, 1], u[:, 2])


# -- (3) bad input: out-of-range indices, graphs bigger than compiled


def test_out_of_range_and_oversized_graphs_are_refused():
    _, g = _edge_model()
    d = _edge_data(20)
    q = lightspeed.quantize(g, "auto", d)
    bad = dict(d, receivers=d["receivers"].copy())
    bad["receivers"][3, 2] = N
    with pytest.raises(
        InputError, match=r"'receivers'.*index 4 at \(3, 2\).*\[0, 4\).*at most 4 nodes"
    ):
        q.predict(bad)
    with pytest.raises(InputError, match=r"index -1"):
        q.predict(dict(d, senders=-np.ones_like(d["senders"])))
    with pytest.raises(InputError, match=r"index 1.5"):
        q.predict(dict(d, senders=np.full(d["senders"].shape, 1.5)))
    with pytest.raises(InputError, match=r"at most 4 nodes"):
        q.predict(dict(d, x=np.zeros((20, N + 1, F))))
    with pytest.raises(InputError, match=r"at most 7 edges"):
        q.predict(dict(d, receivers=np.zeros((20, E + 1), dtype=np.int64)))
    with pytest.raises(InputError, match=r"outside \[0, 4\)"):  # the float model too
        q.predict_float(bad)


def test_integer_input_read_as_data_is_refused():
    class Bad(torch.nn.Module):
        def forward(self, x, idx):
            return x * idx.float()

    with pytest.raises(ModelError, match=r"'idx' has an integer type.*only as indices"):
        lightspeed.load(
            _export(Bad(), (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long)), ["x", "idx"])
        )


def test_index_add_and_scatter_nd_are_refused_with_the_fix():
    recv = torch.tensor([0, 0, 1])

    class IndexAdd(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2, 3).index_add_(1, recv, x)

    with pytest.raises(UnsupportedOpError, match=r"repeated indices.*scatter_add"):
        lightspeed.load(_export(IndexAdd(), (torch.zeros(2, 3, 3),), ["x"]))
    from onnx import helper

    from tests.frontends.helpers import make_model

    nodes = [helper.make_node("ScatterND", ["z", "i", "x"], ["y"], reduction="add")]
    model = make_model(nodes, {"x": [None, 3]}, {"y": [None, 3]},
                       inits={"z": np.zeros((1, 3), np.float32), "i": np.zeros((1, 1), np.int64)})  # fmt: skip
    with pytest.raises(UnsupportedOpError, match=r"ScatterND.*batch axis.*ScatterElements"):
        lightspeed.load(model)


def test_server_refuses_bad_edge_index(tmp_path):
    pytest.importorskip("tritonclient.http")
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from lightspeed.serve.repo_add import EntryOptions, add_model
    from lightspeed.serve.server import BackgroundServer, ServerConfig

    _, g = _edge_model()
    d = _edge_data(50)
    q = lightspeed.quantize(g, "auto", d)
    q.save(tmp_path / "compiled")
    add_model(tmp_path / "compiled", tmp_path / "repo", "gnn", EntryOptions(max_batch_size=8))
    cfg = ServerConfig(repository=tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0)
    with BackgroundServer(cfg) as srv:
        c = httpclient.InferenceServerClient(srv.http_url)

        def infer(recv):
            ins = []
            for name, a, dt in [("x", d["x"][:2], "FP32"), ("receivers", recv, "INT64"),
                                ("senders", d["senders"][:2], "INT64")]:  # fmt: skip
                i = httpclient.InferInput(name, list(a.shape), dt)
                i.set_data_from_numpy(a)
                ins.append(i)
            return c.infer("gnn", ins)

        ok = infer(d["receivers"][:2]).as_numpy("y")
        np.testing.assert_array_equal(ok, q.predict({k: v[:2] for k, v in d.items()})["y"])
        bad = d["receivers"][:2].copy()
        bad[1, 0] = 9
        with pytest.raises(
            InferenceServerException, match=r"receivers.*index 9.*\[0, 4\).*at most 4 nodes"
        ):
            infer(bad)


# -- (4) firmware


def _fw_edge_model():
    _, g = _edge_model()
    from lightspeed.quantize import AutoOptions

    d = _edge_data(300)
    return lightspeed.quantize(
        g, "auto", d, options=AutoOptions(frac_bits=5, weight_bits=8)
    ), _edge_data(400, seed=5)


def _fw_fixed_model():
    torch.manual_seed(2)
    g = lightspeed.load(_export(FixedGraphIN(n=3, p=2, d=2), (torch.zeros(2, 3, 2),), ["x"]))
    from lightspeed.quantize import AutoOptions

    x = np.random.default_rng(6).normal(0, 1, (300, 3, 2))
    return lightspeed.quantize(g, "auto", x, options=AutoOptions(frac_bits=5, weight_bits=8))


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_edge_list_firmware_bit_exact(target, tmp_path):
    q, d = _fw_edge_model()
    assert_firmware_exact(q, tmp_path, target, X=d)


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_fixed_graph_firmware_bit_exact(target, tmp_path):
    assert_firmware_exact(_fw_fixed_model(), tmp_path, target, n=500)
