"""layernorm / rmsnorm: the fixed contract against a literal reference, float against
onnxruntime, torch and Keras imports at auto precision, refusals, QONNX round trip, RTL, HLS."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import ConfigError, LightspeedError, UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

from tests.firmware.check import assert_firmware_exact  # noqa: E402
from tests.frontends.helpers import check_against_ort, make_model, run_ir  # noqa: E402


def _cast(num: int, den_log2: int, t: FixedType) -> int:
    """(t)(num * 2**-den_log2) with t's rounding (TRN or RND) and saturation, by integers."""
    sh = den_log2 - t.frac
    if sh <= 0:
        q = num << -sh
    elif t.rounding == "TRN":
        q = num >> sh
    else:  # RND: half up
        q = (num + (1 << (sh - 1))) >> sh
    return min(max(q, t.min_int), t.max_int)


def _literal_row(op, xm, xf, prec, gamma, beta, eps, size):
    """The contract of lightspeed.ops.norm for one row, with Python integers and math.isqrt-free
    loops (the normalization shift found by a while loop, not a formula)."""
    n = len(xm)
    r = 17 + (n - 1).bit_length()
    rc = round(2**r / n) if n & (n - 1) else 2**r // n
    if op == "layernorm":
        acc = prec["accum"]
        mean = _cast(sum(xm) * rc, xf + r, acc)
        f = max(xf, acc.frac)
        d = [_cast((m << (f - xf)) - (mean << (f - acc.frac)), f, acc) for m in xm]
        df = acc.frac
    else:
        d, df = list(xm), xf
    vt = prec["var"]
    top = max(2 * df + r, vt.frac)
    e = _cast(int(eps * 2**60), 60, vt)
    total = (sum(v * v for v in d) * rc << (top - 2 * df - r)) + (e << (top - vt.frac))
    v = max(_cast(total, top, vt), 1)
    s = 0
    while (v << (s + 2)) < 2**vt.width:
        s += 2
    bits = size.bit_length() - 1
    idx = (v << s) >> (vt.width - bits)
    tt = prec["table"]
    c = max((idx + 0.5) / size, 0.25)
    entry = _cast(round(2**40 / math.sqrt(c)), 40, tt)
    inv = _cast(entry << (s // 2), tt.frac + vt.integer // 2, prec["inv"])
    out = []
    for i, di in enumerate(d):
        z = _cast(di * inv, df + prec["inv"].frac, prec["norm"])
        wt, bt = prec["weight"], prec["bias"]
        g = _cast(round(gamma[i] * 2**40), 40, wt)
        b = _cast(round(beta[i] * 2**40), 40, bt) if beta is not None else 0
        f = max(prec["norm"].frac + wt.frac, bt.frac)
        y = ((z * g) << (f - prec["norm"].frac - wt.frac)) + (b << (f - bt.frac))
        out.append(_cast(y, f, prec["result"]))
    return out


PREC = {
    "accum": FixedType(12, 4, True, "RND", "SAT"),
    "var": FixedType(20, 6, False, "RND", "SAT"),
    "table": FixedType(12, 2, False, "RND", "SAT"),
    "inv": FixedType(16, 8, False, "TRN", "SAT"),
    "norm": FixedType(10, 3, True, "RND", "SAT"),
    "weight": FixedType(8, 2, True, "RND", "SAT"),
    "bias": FixedType(8, 1, True, "RND", "SAT"),
    "result": FixedType(10, 4, True, "RND", "SAT"),
}


@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("n", [6, 8])
def test_fixed_contract_matches_literal_reference(op, n):
    rng = np.random.default_rng(n)
    xt = FixedType(8, 3, True)
    x = rng.integers(xt.min_int, xt.max_int + 1, (60, n))
    x[0] = 5  # a constant row: zero variance, the epsilon and the one-lsb floor
    x[1] = 0
    gamma, beta = rng.uniform(-1.5, 1.5, n), rng.uniform(-0.8, 0.8, n)
    params = {"weight": gamma, "bias": beta}
    node = Node("ln", op, ["x"], ["y"], {"epsilon": 1e-3, "table_size": 64, "n": n}, params)
    o = get_op(op)
    prec = {k: v for k, v in PREC.items() if k in o.roles}
    (y,) = o.run_fixed(node, [Fx(x, xt)], prec, o.quantize_params(node, prec))
    for row in range(len(x)):
        want = _literal_row(op, [int(v) for v in x[row]], xt.frac, {**PREC, **prec},
                            gamma, beta, 1e-3, 64)  # fmt: skip
        assert list(y.m[row]) == want, row


def _ln_onnx(opset=17, axis=-1):
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=axis, epsilon=1e-4)
    ]
    inits = {"g": rng.uniform(0.5, 1.5, 6).astype(np.float32),
             "b": rng.normal(0, 0.3, 6).astype(np.float32)}  # fmt: skip
    if axis != -1:
        inits = {k: np.broadcast_to(v, (3, 6)).copy() for k, v in inits.items()}
    return make_model(nodes, {"x": [None, 3, 6]}, {"y": [None, 3, 6]}, inits=inits, opset=opset)


def test_float_matches_onnxruntime():
    x = np.random.default_rng(0).normal(1, 2, (50, 3, 6)).astype(np.float32)
    g = check_against_ort(_ln_onnx(), {"x": x}, atol=2e-5)
    assert [n.op for n in g.nodes] == ["layernorm"]


def test_rms_normalization_opset23_matches_onnxruntime():
    nodes = [helper.make_node("RMSNormalization", ["x", "g"], ["y"], epsilon=1e-4)]
    inits = {"g": np.linspace(0.5, 1.5, 6).astype(np.float32)}
    m = make_model(nodes, {"x": [None, 3, 6]}, {"y": [None, 3, 6]}, inits=inits, opset=23)
    m.ir_version = 10
    x = np.random.default_rng(0).normal(0, 2, (50, 3, 6)).astype(np.float32)
    try:
        g = check_against_ort(m, {"x": x}, atol=2e-5)
    except Exception as exc:  # an onnxruntime without opset 23
        if isinstance(exc, (AssertionError, LightspeedError)):
            raise
        pytest.skip(f"onnxruntime cannot run RMSNormalization: {exc}")
    assert [n.op for n in g.nodes] == ["rmsnorm"]


def test_other_axes_are_refused_with_the_form():
    with pytest.raises(UnsupportedOpError, match="last axis only"):
        lightspeed.load(_ln_onnx(axis=1))


def test_var_type_must_be_even_and_unsigned():
    g = lightspeed.load(_ln_onnx())
    x = np.random.default_rng(0).normal(0, 1, (50, 3, 6))
    cfg = {"layers": {g.nodes[0].name: {"var": "ap_ufixed<20,5>"}}}
    with pytest.raises(ConfigError, match="even number of integer bits"):
        lightspeed.quantize(g, "auto", x, config=cfg)


def test_trained_mode_gives_default_types():
    g = lightspeed.load(_ln_onnx())
    q = lightspeed.quantize(g, "trained", input_types={"x": "ap_fixed<10,4>"})
    x = np.random.default_rng(0).integers(-512, 512, (200, 3, 6)) / 64
    np.testing.assert_allclose(q.predict(x), q.predict_float(x), atol=0.02)


def test_qonnx_round_trip_bit_exact(tmp_path):
    from lightspeed.frontends.qonnx_export import export_qonnx

    nodes = [
        Node("ln", "layernorm", ["x"], ["h"], {"epsilon": 1e-3},
             {"weight": np.linspace(0.5, 1.5, 6), "bias": np.linspace(-0.3, 0.3, 6)}),
        Node("rms", "rmsnorm", ["h"], ["y"], {"epsilon": 1e-3}, {"weight": np.ones(6) * 0.75}),
    ]  # fmt: skip
    g = infer_shapes(Graph("norms", {"x": (3, 6)}, ["y"], nodes))
    x = np.random.default_rng(0).normal(0, 1, (300, 3, 6))
    q = lightspeed.quantize(g, "auto", x)
    g2 = lightspeed.load(export_qonnx(q, tmp_path / "m.onnx"))
    assert [n.op for n in g2.nodes if n.op != "quant"] == ["layernorm", "rmsnorm"]
    q2 = lightspeed.quantize(g2, "auto", x[:10])
    np.testing.assert_array_equal(q2.predict(x), q.predict(x))


# -- torch: nn.LayerNorm (ONNX LayerNormalization, or the opset-13 float form) and nn.RMSNorm


def _torch_model(layer: str, torch):
    norm = {"layernorm": torch.nn.LayerNorm(8), "rmsnorm": torch.nn.RMSNorm(8)}[layer]
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(6, 8), norm, torch.nn.ReLU(), torch.nn.Linear(8, 5))
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        if getattr(norm, "bias", None) is not None:
            norm.bias.uniform_(-0.5, 0.5)
    return m.eval()


@pytest.mark.parametrize("layer", ["layernorm", "rmsnorm"])
def test_torch_layers_auto_precision_agree(layer):
    torch = pytest.importorskip("torch")
    m = _torch_model(layer, torch)
    x = np.random.default_rng(0).normal(0, 1, (2000, 6)).astype(np.float32)
    g = lightspeed.load(m, input_shape=(6,))
    assert layer in [n.op for n in g.nodes]
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], ref, atol=1e-5)
    y = lightspeed.quantize(g, "auto", x[:500]).predict(x)
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.99


def test_layernorm_float_form_before_opset_17_is_fused():
    torch = pytest.importorskip("torch")
    import io

    m = _torch_model("layernorm", torch)
    buf = io.BytesIO()
    torch.onnx.export(m, torch.zeros(2, 6), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=13,
                      dynamo=False)  # fmt: skip
    model = onnx.load_from_string(buf.getvalue())
    assert "LayerNormalization" not in {n.op_type for n in model.graph.node}
    g = lightspeed.load(model)
    assert "layernorm" in [n.op for n in g.nodes]
    x = np.random.default_rng(0).normal(0, 1, (100, 6)).astype(np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {"x": x})[0], ref, atol=1e-5)


# -- Keras


@pytest.mark.parametrize("cls", ["LayerNormalization", "RMSNormalization"])
def test_keras_layers_auto_precision_agree(cls, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 6))
    h = getattr(keras.layers, cls)()(keras.layers.Dense(8)(inp))
    m = keras.Model(inp, keras.layers.Dense(3)(h))
    rng = np.random.default_rng(1)
    m.set_weights([w + rng.normal(0, 0.3, w.shape) for w in m.get_weights()])
    m.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(0, 1, (500, 4, 6)).astype(np.float32)
    ref = np.asarray(m.predict(x, verbose=0))
    g = lightspeed.load(tmp_path / "m.keras")
    assert {"layernorm": "LayerNormalization", "rmsnorm": "RMSNormalization"}[g.nodes[1].op] == cls
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], ref, atol=1e-4)
    y = lightspeed.quantize(g, "auto", x).predict(x)
    assert (y.argmax(-1) == ref.argmax(-1)).mean() >= 0.99


def test_keras_other_axis_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    inp = keras.Input((4, 6))
    m = keras.Model(inp, keras.layers.LayerNormalization(axis=1)(inp))
    m.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedOpError, match="axis=1"):
        lightspeed.load(tmp_path / "m.keras")


# -- RTL and HLS


def _fw_model(op):
    rng = np.random.default_rng(0)
    params = {"weight": rng.uniform(0.5, 1.5, 6)}
    if op == "layernorm":
        params["bias"] = rng.normal(0, 0.3, 6)
    nodes = [
        Node("fc", "dense", ["x"], ["h"], {}, {"weight": rng.normal(0, 0.8, (4, 6)), "bias": rng.normal(0, 0.3, 6)}),
        Node("ln", op, ["h"], ["y"], {"epsilon": 1e-3, "table_size": 64}, params),
    ]  # fmt: skip
    g = infer_shapes(Graph("ln", {"x": (2, 4)}, ["y"], nodes))
    from lightspeed.quantize import AutoOptions

    X = rng.normal(0, 1, (500, 2, 4))
    return lightspeed.quantize(
        g, "auto", X, options=AutoOptions(weight_bits=8, frac_bits=5, table_bits=10)
    )


@pytest.mark.parametrize("target", ["verilog", "hls"])
@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
def test_firmware_bit_exact(op, target, tmp_path):
    assert_firmware_exact(_fw_model(op), tmp_path, target, n=2000)
