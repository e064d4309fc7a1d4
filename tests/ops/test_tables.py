"""Lookup-table activations: contract details and documented accuracy."""

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import ConfigError
from lightspeed.ir import Graph, Node, infer_shapes


def _graph(op, n=8, **attrs):
    return infer_shapes(Graph(op, {"x": (n,)}, ["y"], [Node("act", op, ["x"], ["y"], attrs)]))


@pytest.mark.parametrize("op, bound", [("sigmoid", 0.0025), ("tanh", 0.0045)])
def test_unary_table_accuracy(op, bound, rng):
    """Default 1024-entry tables: |error| <= step*max_slope/2 + input lsb/2 + entry lsb."""
    x = rng.uniform(-4, 4, (2000, 8))
    q = lightspeed.quantize(_graph(op), "auto", calibration=x)
    err = np.abs(q.predict(x) - q.predict_float(x)).max()
    assert err < bound


def test_unary_table_saturates_outside_range():
    cfg = {"inputs": {"x": "ap_fixed<16,8>"}}
    q = lightspeed.quantize(
        _graph("sigmoid", 2), "auto", calibration=np.array([[-1.0, 1.0]]), config=cfg
    )
    y = q.predict(np.array([[-50.0, 50.0]]))
    assert y[0, 0] < 1e-3 and y[0, 1] > 0.999


def test_softmax_accuracy_and_normalisation(rng):
    x = rng.normal(0, 2, (2000, 5))
    g = _graph("softmax", 5)
    q = lightspeed.quantize(g, "auto", calibration=x)
    y = q.predict(x)
    assert np.abs(y - q.predict_float(x)).max() < 0.01
    assert np.abs(y.sum(axis=1) - 1).max() < 0.02
    assert np.mean(y.argmax(1) == x.argmax(1)) > 0.99


def test_table_config_must_be_power_of_two_step():
    g = _graph("sigmoid", 2)
    with pytest.raises(ConfigError, match="power of two"):
        lightspeed.quantize(
            g, "ap_fixed<16,6>", config={"layers": {"act": {"table_size": 1000}}}
        ).predict(np.zeros((1, 2)))


def test_table_size_config_changes_table():
    g = _graph("tanh", 2)
    q = lightspeed.quantize(g, "ap_fixed<16,6>", config={"layers": {"act": {"table_size": 256}}})
    assert q.qparams["act"]["table"].shape == (256,)


def test_softmax_auto_keeps_the_argmax_of_a_torch_model():
    """A float 3-layer torch MLP with close logits: ties from softmax's own tables/rounding
    used to decide the class (1024 exp bins over [-8, 0) merge logits closer than 1/128,
    then the first class wins); auto now gives the exp table one bin per input lsb and the
    output enough fractional bits."""
    torch = pytest.importorskip("torch")
    agreement = []
    for seed in (0, 1, 3):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
            torch.nn.Linear(32, 5), torch.nn.Softmax(dim=-1),
        ).eval()  # fmt: skip
        with torch.no_grad():
            net[4].weight.mul_(2.0)
        x = np.random.default_rng(seed).normal(0, 1, (2000, 16)).astype(np.float32)
        q = lightspeed.quantize(lightspeed.load(net, input_shape=(16,)), "auto", calibration=x)
        sm = next(n for n in q.graph.nodes if n.op == "softmax")
        assert sm.attrs["exp_table_size"] == 8 * 2 ** q.tensor_types[sm.inputs[0]].frac
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        agreement.append(np.mean(q.predict(x).argmax(1) == ref.argmax(1)))
    assert min(agreement) >= 0.99, agreement


def test_softmax_exp_table_size_from_the_config_wins():
    g = _graph("softmax", 5)
    q = lightspeed.quantize(
        g, "auto", calibration=np.zeros((2, 5)), config={"layers": {"act": {"exp_table_size": 256}}}
    )
    assert q.qparams["act"]["exp_table"].shape == (256,)


# ---------------------------------------------------------------------------
# table_layout: hls4ml (entries at left bin edges in float32, index truncated toward zero)


def _hls4ml_layout_model(op: str, n: int = 8):
    cfg = {
        "inputs": {"x": "ap_fixed<12,4>"},
        "layers": {"act": {"table": "ap_fixed<18,8>", "result": "ap_fixed<18,8>",
                           "table_layout": "hls4ml"}},
    }  # fmt: skip
    return lightspeed.quantize(_graph(op, n), "ap_fixed<16,6>", config=cfg)


@pytest.mark.parametrize(("op", "half_range"), [("sigmoid", 8), ("tanh", 4)])
def test_hls4ml_layout_follows_nnet_activation(op, half_range):
    """Every input of an ap_fixed<12,4>: index = trunc(x * 1024 / (2 * range)) + 512,
    clamped; entry = f(-range + index * step) computed in float32, truncated to
    ap_fixed<18,8> (hls4ml's nnet::sigmoid / nnet::tanh with its default table type)."""
    q = _hls4ml_layout_model(op, 1)
    x = np.arange(-2048, 2048)[:, None] / 256.0  # the whole input grid
    step = 2 * half_range / 1024
    idx = np.clip(np.trunc(x[:, 0] / step).astype(np.int64) + 512, 0, 1023)
    at = (-half_range + idx * step).astype(np.float32)
    f = (
        (1.0 / (np.float32(1) + np.exp(-at)).astype(np.float64)).astype(np.float32)
        if op == "sigmoid"
        else np.tanh(at)
    )
    want = np.floor(f.astype(np.float64) * 1024) / 1024
    np.testing.assert_array_equal(q.predict(x)[:, 0], want)
    # the default layout is another contract: bin centres, floor index
    cfg = {"inputs": {"x": "ap_fixed<12,4>"},
           "layers": {"act": {"table": "ap_fixed<18,8>", "result": "ap_fixed<18,8>"}}}  # fmt: skip
    centre = lightspeed.quantize(_graph(op, 1), "ap_fixed<16,6>", config=cfg)
    assert np.mean(centre.predict(x)[:, 0] != want) > 0.1  # measured 23-37%


def test_hls4ml_layout_refusals():
    g = _graph("tanh", 2)
    with pytest.raises(ConfigError, match=r"table_layout 'middle' is not one of centre, hls4ml"):
        lightspeed.quantize(
            g, "ap_fixed<16,6>", config={"layers": {"act": {"table_layout": "middle"}}}
        )
    with pytest.raises(ConfigError, match=r"symmetric around 0"):
        lightspeed.quantize(
            g, "ap_fixed<16,6>",
            config={"layers": {"act": {"table_layout": "hls4ml", "table_range": [-4, 12]}}},
        )  # fmt: skip


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_hls4ml_layout_firmware_bit_exact(tmp_path, target):
    from lightspeed import firmware
    from lightspeed.errors import ToolMissingError
    from lightspeed.firmware import tools

    needs = ("find_verilator", "find_make", "find_cxx") if target == "verilog" else (
        "find_ap_types", "find_cxx")  # fmt: skip
    try:
        for tool in needs:
            getattr(tools, tool)()
    except ToolMissingError as exc:
        pytest.skip(str(exc))
    for op in ("sigmoid", "tanh"):
        q = _hls4ml_layout_model(op, 4)
        x = np.random.default_rng(0).uniform(-9, 9, (2000, 4))
        x[:100] = np.arange(-2048, 2048, 10.24)[:400].reshape(100, 4) / 256.0  # near zero too
        fw = firmware.generate(q, tmp_path / f"{target}_{op}", target=target)
        r = firmware.check(fw, x, q=q)
        assert r["exact"], r["mismatches"]
