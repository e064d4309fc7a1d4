import json

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import ConfigError, InputError
from lightspeed.fixed import parse_type
from tests.conftest import make_cnn, make_mlp


def test_auto_accumulators_cannot_overflow(mlp, rng):
    x = rng.normal(0, 1, (500, 16))
    q = lightspeed.quantize(mlp, "auto", calibration=x)
    for node in q.graph.nodes:
        if node.op != "dense":
            continue
        p, x_t = q.precision[node.name], q.tensor_types[node.inputs[0]]
        acc = p["accum"]
        # products land exactly on the accumulator grid
        assert acc.frac >= x_t.frac + p["weight"].frac
        # the exact worst case over the whole input type fits (independent interval analysis)
        w = q.qparams[node.name]["weight"].astype(object)
        sh = acc.frac - x_t.frac - p["weight"].frac
        bias = 1 << (acc.frac - p["bias"].frac)
        for j in range(w.shape[1]):
            terms = [(int(wi) * x_t.min_int, int(wi) * x_t.max_int) for wi in w[:, j]]
            b0 = int(q.qparams[node.name]["bias"][j]) * bias
            hi = b0 + sum(max(t) for t in terms) * (1 << sh)
            lo = b0 + sum(min(t) for t in terms) * (1 << sh)
            assert acc.min_int <= lo and hi <= acc.max_int


def test_auto_is_close_to_float_and_reports(mlp, rng):
    x = rng.normal(0, 1, (2000, 16))
    q = lightspeed.quantize(mlp, "auto", calibration=x)
    rep = q.report()
    assert rep["overflow_warnings"] == []
    err = rep["calibration"]["outputs"][q.output_names[0]]["max_abs_error"]
    assert 0 < err < 0.02
    assert np.allclose(q.predict(x), q.predict_float(x), atol=0.02)
    assert rep["totals"]["mults"] > 0 and rep["totals"]["bops"] > rep["totals"]["mults"]


def test_uniform_type_everywhere(mlp, rng):
    q = lightspeed.quantize(mlp, "ap_fixed<16,6>", calibration=rng.normal(0, 1, (10, 16)))
    t = parse_type("ap_fixed<16,6>")
    assert all(ty == t for p in q.precision.values() for ty in p.values())
    assert q.input_types["x"] == t


def test_uniform_without_calibration_is_allowed(mlp, rng):
    q = lightspeed.quantize(mlp, "ap_fixed<16,6>")
    y = q.predict(rng.normal(0, 1, (4, 16)))
    assert y.shape == (4, 5)


def test_auto_without_calibration_refused(mlp):
    with pytest.raises(ConfigError, match="calibration"):
        lightspeed.quantize(mlp, "auto")


def test_layer_override_and_overflow_warning(mlp, rng):
    x = rng.normal(0, 1, (500, 16)) * 4
    cfg = {"layers": {"fc0": {"result": "ap_fixed<6,2>", "accum": "ap_fixed<12,3>"}}}
    q = lightspeed.quantize(mlp, "auto", calibration=x, config=cfg)
    assert q.precision["fc0"]["result"] == parse_type("ap_fixed<6,2>")
    assert q.precision["fc0"]["weight"].width == 16  # auto still types the rest
    warnings = q.report()["overflow_warnings"]
    assert any(w.startswith("fc0") for w in warnings)


def test_config_file_yaml_and_json(tmp_path, mlp, rng):
    y = tmp_path / "c.yaml"
    y.write_text("precision: ap_fixed<12,4>\nlayers:\n  fc3:\n    result: ap_fixed<20,8>\n")
    q = lightspeed.quantize(mlp, config=str(y))
    assert q.precision["fc3"]["result"] == parse_type("ap_fixed<20,8>")
    assert q.precision["fc0"]["weight"] == parse_type("ap_fixed<12,4>")
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"precision": "auto", "auto": {"weight_bits": 6}}))
    q = lightspeed.quantize(mlp, config=str(j), calibration=rng.normal(0, 1, (50, 16)))
    assert q.precision["fc0"]["weight"].width == 6


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"layers": {"nope": {"result": "ap_fixed<8,3>"}}}, "not in the model"),
        ({"layers": {"relu0": {"weight": "ap_fixed<8,3>"}}}, "no precision role"),
        ({"layers": {"fc0": {"result": "ap_fixed<8"}}}, "cannot parse"),
        ({"precision": "ap_fixed<80,3>"}, "width 80"),
        ({"bogus": 1}, "unknown config keys"),
        ({"inputs": {"y": "ap_fixed<8,3>"}}, "not a model input"),
    ],
)
def test_bad_configs(mlp, cfg, match):
    with pytest.raises(ConfigError, match=match):
        lightspeed.quantize(mlp, "ap_fixed<16,6>", config=cfg)


def test_yaml_flow_mapping_hint(tmp_path, mlp):
    p = tmp_path / "flow.yaml"
    p.write_text("layers:\n  fc3: {result: ap_fixed<20,8>}\n")
    with pytest.raises(ConfigError, match="quote"):
        lightspeed.quantize(mlp, "ap_fixed<16,6>", config=str(p))


def test_unparsable_config_file(tmp_path, mlp):
    p = tmp_path / "bad.yaml"
    p.write_text("precision: [unclosed\n")
    with pytest.raises(ConfigError, match="does not parse"):
        lightspeed.quantize(mlp, config=str(p))


@pytest.mark.parametrize(
    "data, match",
    [
        (np.full((10, 16), np.nan), "NaN"),
        (np.zeros((10, 15)), "shape"),
        (np.zeros((0, 16)), "empty"),
        (np.array([["a"] * 16]), "dtype"),
    ],
)
def test_bad_calibration(mlp, data, match):
    with pytest.raises(InputError, match=match):
        lightspeed.quantize(mlp, "auto", calibration=data)


def test_cnn_auto_no_overflow_and_close(rng):
    g = make_cnn()
    x = rng.normal(0, 1, (300, 1, 8, 8))
    q = lightspeed.quantize(g, "auto", calibration=x)
    assert q.report()["overflow_warnings"] == []
    assert np.allclose(q.predict(x), q.predict_float(x), atol=0.05)


def test_trained_precision_attr_is_honoured(rng):
    g = make_mlp(sizes=(4, 3))
    g.nodes[0].types = {"weight": parse_type("ap_fixed<4,1>")}
    q = lightspeed.quantize(g, "auto", calibration=rng.normal(0, 1, (20, 4)))
    assert q.precision["fc0"]["weight"] == parse_type("ap_fixed<4,1>")
    ints = q.qparams["fc0"]["weight"]
    assert ints.min() >= -8 and ints.max() <= 7


def test_trained_precision_keeps_quant_types(rng):
    from lightspeed.ir import Graph, Node, infer_shapes

    w = np.round(rng.normal(0, 1, (4, 3)) * 8) / 8  # on the ap_fixed<6,3> grid
    g = infer_shapes(Graph("t", {"x": (4,)}, ["y"], [
        Node("qin", "quant", ["x"], ["xq"], types={"result": parse_type("ap_fixed<8,3,RND_CONV,SAT>")}),
        Node("fc", "dense", ["xq"], ["h"], {}, {"weight": w}, {"weight": parse_type("ap_fixed<6,3>")}),
        Node("qout", "quant", ["h"], ["y"], types={"result": parse_type("ap_fixed<12,5,RND_CONV,SAT>")}),
    ]))  # fmt: skip
    x = rng.normal(0, 1, (200, 4))
    q = lightspeed.quantize(g, "trained", calibration=x)
    assert str(q.input_types["x"]) == "ap_fixed<8,3,RND_CONV,SAT>"
    assert np.array_equal(
        q.predict(x), q.predict_float(x)
    )  # float model fake-quantizes identically
    # trained mode takes a config too (input types, pins), checked against the model
    with pytest.raises(ConfigError, match="not in the model"):
        lightspeed.quantize(g, "trained", config={"layers": {"nope": {"result": "ap_fixed<8,3>"}}})


def test_auto_never_warns_about_its_own_sigmoid_type(rng):
    """A sigmoid reaching 1.0 in float saturates by one lsb in its auto type: no warning."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 1),
        torch.nn.Sigmoid(),
    )
    with torch.no_grad():
        net[3].weight.mul_(20)  # drive the sigmoid into saturation on part of the data
        net[1].running_var.fill_(0.5)
    net.eval()
    x = rng.normal(0, 3, (2000, 8)).astype(np.float32)
    q = lightspeed.quantize(lightspeed.load(net, input_shape=(8,)), "auto", calibration=x)
    hi = q.calibration_ranges[q.graph.outputs[0]][1]
    t = q.output_types[q.graph.outputs[0]]
    assert t.max_value < hi <= 1.0  # the float sigmoid passes 1 - lsb: the case that warned
    assert q.report()["overflow_warnings"] == []
    err = np.abs(q.predict(x) - q.predict_float(x)).max()
    assert err < 0.01  # one lsb of saturation; the rest is the lookup table's step
