"""Keras / QKeras frontend against the frameworks' own outputs.

Keras 3 models are built and saved here (``.keras``, legacy ``.h5``); Keras 2
and QKeras models come from a separate Keras 2 venv (tests/models/keras_corpus.py),
as ``arch.json`` + ``weights.h5`` and full-model ``.h5``. Float models must
match Keras's float outputs and keep >= 99% argmax agreement at auto
precision; QKeras models at trained precision (input ``ap_fixed<16,6>``)
must equal QKeras's ``model.predict`` bit for bit.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import lightspeed
from lightspeed.emulate import run_float
from lightspeed.errors import ModelError, UnsupportedOpError

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("h5py")


def _out(g, y):
    return np.asarray(y[g.outputs[0]] if isinstance(y, dict) else y)


def _float(g, x):
    return _out(g, run_float(g, {next(iter(g.inputs)): x}))


# ---------------------------------------------------------------------------
# Keras 3 (in process)


@pytest.fixture(scope="module")
def keras3_corpus():
    pytest.importorskip("keras")
    from tests.models.keras_corpus import keras3_models

    return {m.name: m for m in keras3_models()}


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("name", ["cnn2d", "cnn1d", "merges"])
def test_keras3_file_float_and_auto(keras3_corpus, name, fmt, tmp_path):
    m = keras3_corpus[name]
    path = tmp_path / f"{name}.{fmt}"
    m.model.save(path)
    ref = np.asarray(m.model.predict(m.x, verbose=0))
    g = lightspeed.load(path)
    assert next(iter(g.inputs.values())) == m.x.shape[1:]  # Keras's own (channels-last) shape
    np.testing.assert_allclose(_float(g, m.x), ref, rtol=1e-4, atol=2e-5)
    q = lightspeed.quantize(g, calibration=m.x)
    agree = (_out(g, q.predict(m.x)).argmax(-1) == ref.argmax(-1)).mean()
    assert agree >= 0.99, agree


def test_keras_archive_without_keras(keras3_corpus, tmp_path, monkeypatch):
    """Layers Keras cannot rebuild here (QKeras for Keras 3, custom layers): weights by h5py."""
    from lightspeed.errors import ToolMissingError
    from lightspeed.frontends import keras as frontend

    m = keras3_corpus["cnn2d"]
    m.model.save(tmp_path / "m.keras")
    with_keras = lightspeed.load(tmp_path / "m.keras")

    def no_keras():
        raise ToolMissingError("keras missing")

    monkeypatch.setattr(frontend, "_keras", no_keras)
    without = lightspeed.load(tmp_path / "m.keras")
    assert without.node_names == with_keras.node_names
    for a, b in zip(without.nodes, with_keras.nodes, strict=True):
        assert a.params.keys() == b.params.keys()
        for k in a.params:
            assert np.array_equal(a.params[k], b.params[k]), (a.name, k)


def test_keras3_live_model_and_names(keras3_corpus):
    m = keras3_corpus["cnn2d"]
    g = lightspeed.load(m.model)
    assert list(g.inputs) == ["img"] and g.outputs == ["out"]
    names = g.node_names
    assert {"c1", "dw", "sep_depthwise", "sep_pointwise", "out", "out_softmax"} <= set(names)
    # a transpose to channels-first after the input and one back before Flatten, nothing more
    assert sum(n.op == "transpose" for n in g.nodes) == 2
    np.testing.assert_allclose(
        _float(g, m.x), np.asarray(m.model.predict(m.x, verbose=0)), rtol=1e-4, atol=2e-5
    )


def test_two_inputs_two_outputs(tmp_path):
    keras = pytest.importorskip("keras")
    L = keras.layers
    a, b = keras.Input((4, 4, 2), name="a"), keras.Input((3,), name="b")
    h = L.Conv2D(3, 2, name="conv")(a)
    f = L.Flatten(name="flat")(h)
    y1 = L.Dense(2, name="y1")(L.Concatenate(name="cat")([f, b]))
    y2 = L.Dense(1, activation="sigmoid", name="y2")(b)
    model = keras.Model([a, b], [y1, y2])
    model.save(tmp_path / "two.keras")
    g = lightspeed.load(tmp_path / "two.keras")
    assert g.inputs == {"a": (4, 4, 2), "b": (3,)} and g.outputs == ["y1", "y2"]
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(50, 4, 4, 2)), rng.normal(size=(50, 3))
    ref = model.predict([xa.astype(np.float32), xb.astype(np.float32)], verbose=0)
    got = run_float(g, {"a": xa, "b": xb})
    for name, r in zip(["y1", "y2"], ref, strict=True):
        np.testing.assert_allclose(got[name], r, rtol=1e-4, atol=2e-5)


def test_dynamic_length_needs_input_shape():
    from lightspeed.errors import ShapeError

    model = _k3(
        lambda k, L: k.Sequential(
            [k.Input((None, 3)), L.Conv1D(2, 3, name="c"), L.GlobalMaxPooling1D(name="g")]
        )
    )
    with pytest.raises(ShapeError, match="--input-shape"):
        lightspeed.load(model)
    g = lightspeed.load(model, input_shape=(10, 3))
    x = np.random.default_rng(0).normal(size=(20, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(_float(g, x), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def _k3(build):
    keras = pytest.importorskip("keras")
    return build(keras, keras.layers)


def test_unsupported_layers_named():
    model = _k3(
        lambda k, L: k.Sequential([k.Input((5, 4)), L.SimpleRNN(3, name="rnn"), L.Dense(2)])
    )
    with pytest.raises(UnsupportedOpError, match=r"Keras layer SimpleRNN \('rnn'\).*recurrent"):
        lightspeed.load(model)
    model = _k3(
        lambda k, L: k.Sequential([k.Input((5, 4)), L.LSTM(3, activation="relu", name="lstm")])
    )
    with pytest.raises(UnsupportedOpError, match=r"'lstm'.*activation 'relu'.*defaults"):
        lightspeed.load(model)
    model = _k3(lambda k, L: k.Sequential([k.Input((5, 4)), L.LayerNormalization(1, name="ln")]))
    with pytest.raises(UnsupportedOpError, match=r"'ln' \(LayerNormalization\): axis=1"):
        lightspeed.load(model)
    model = _k3(lambda k, L: k.Sequential([k.Input((6,)), L.Dense(3, activation="swish")]))
    with pytest.raises(UnsupportedOpError, match=r"activation '(swish|silu)'.*hard_silu"):
        lightspeed.load(model)


@pytest.mark.parametrize(
    ("layer", "op"),
    [
        (lambda L: L.UpSampling2D((2, 3)), "resize"),
        (lambda L: L.ZeroPadding2D(((1, 0), (2, 1))), "pad"),
        (lambda L: L.Cropping2D(((1, 0), (2, 1))), "slice"),
        (lambda L: L.Activation("gelu"), "gelu"),
        (lambda L: L.Activation("softsign"), "softsign"),
        (lambda L: L.Activation("hard_swish"), "hard_swish"),
    ],
)
def test_layers_of_newer_ops(layer, op):
    """Layers whose IR op may be missing from a build: refused by op name, else equal to Keras."""
    from lightspeed.ops.registry import all_ops

    model = _k3(
        lambda k, L: k.Sequential([k.Input((6, 6, 2)), L.Conv2D(3, 1), layer(L), L.Flatten()])
    )
    if op not in all_ops():
        with pytest.raises(UnsupportedOpError, match=f"needs op '{op}', which this build"):
            lightspeed.load(model)
        return
    x = np.random.default_rng(0).normal(0, 2, (40, 6, 6, 2)).astype(np.float32)
    g = lightspeed.load(model)
    np.testing.assert_allclose(
        _float(g, x), np.asarray(model.predict(x, verbose=0)), rtol=1e-4, atol=1e-5
    )


def test_channels_first_and_nested_refused():
    model = _k3(
        lambda k, L: k.Sequential(
            [k.Input((2, 6, 6)), L.Conv2D(2, 3, data_format="channels_first", name="cf")]
        )
    )
    with pytest.raises(UnsupportedOpError, match=r"'cf'.*channels_first"):
        lightspeed.load(model)


# ---------------------------------------------------------------------------
# Keras 2 / QKeras (separate venv)


@pytest.fixture(scope="session")
def keras2_dir(tmp_path_factory):
    from tests.models.keras_corpus import build_keras2_corpus

    out = tmp_path_factory.mktemp("keras2")
    ok, why = build_keras2_corpus(out)
    if not ok:
        pytest.skip(why)
    return out


def _load2(d, name, fmt):
    if fmt == "json":
        return lightspeed.load(d / f"{name}.json", weights=d / f"{name}_weights.h5")
    return lightspeed.load(d / f"{name}.h5")


@pytest.mark.peer
@pytest.mark.parametrize("fmt", ["json", "h5"])
@pytest.mark.parametrize("name", ["k2_mlp", "k2_cnn"])
def test_keras2_float(keras2_dir, name, fmt):
    ref = np.load(keras2_dir / f"{name}.npz")
    g = _load2(keras2_dir, name, fmt)
    np.testing.assert_allclose(_float(g, ref["x"]), ref["y"], rtol=1e-4, atol=2e-5)
    q = lightspeed.quantize(g, calibration=ref["x"])
    agree = (_out(g, q.predict(ref["x"])).argmax(-1) == ref["y"].argmax(-1)).mean()
    assert agree >= 0.99, agree


@pytest.mark.peer
@pytest.mark.parametrize("fmt", ["json", "h5"])
@pytest.mark.parametrize("name", ["qmlp6", "qcnn6", "qconv1d_sep", "qconv_bn", "qbinary_ternary"])
def test_qkeras_trained_bit_exact(keras2_dir, name, fmt):
    ref = np.load(keras2_dir / f"{name}.npz")
    g = _load2(keras2_dir, name, fmt)
    inp = next(iter(g.inputs))
    q = lightspeed.quantize(g, precision="trained", input_types={inp: "ap_fixed<16,6>"})
    y = _out(g, q.predict(ref["x"]))
    assert y.shape == ref["y"].shape
    assert int((y != ref["y"]).sum()) == 0
    assert np.array_equal(_float(g, ref["x"]), ref["y"])  # the float graph fake-quantizes too


@pytest.mark.peer
def test_qkeras_types_on_nodes(keras2_dir):
    g = _load2(keras2_dir, "qbinary_ternary", "json")
    types = {n.name: {r: str(t) for r, t in n.types.items()} for n in g.nodes}
    # binary() in a QDense runs with alpha="auto_po2": +-2^k, one k per output column
    w = np.abs(g.node("bin").params["weight"])
    assert np.all(w == w[:1]) and np.all(np.log2(w) == np.round(np.log2(w)))
    t = g.node("bin").types["weight"]
    assert t.width <= 2 + int(np.log2(w.max() / w.min())) and t.frac == -int(np.log2(w.min()))
    assert types["bin"]["bias"] == "ap_fixed<6,3,RND_CONV,SAT>"
    assert types["r1_quantized_relu"]["result"] == "ap_ufixed<4,2,RND_CONV,SAT>"
    assert types["out_quantized_bits"]["result"] == "ap_fixed<8,5,RND_CONV,SAT>"


@pytest.mark.peer
def test_cli_compile_arch_json_with_weights(keras2_dir, tmp_path):
    from lightspeed.cli import main

    ref = np.load(keras2_dir / "k2_mlp.npz")
    np.save(tmp_path / "x.npy", ref["x"])
    out = tmp_path / "compiled"
    args = ["compile", str(keras2_dir / "k2_mlp.json"), "--weights",
            str(keras2_dir / "k2_mlp_weights.h5"), "-o", str(out), "--calibration",
            str(tmp_path / "x.npy"), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert main(["predict", str(out), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy")]) == 0  # fmt: skip
    y = np.load(tmp_path / "y.npy")
    assert (y.argmax(-1) == ref["y"].argmax(-1)).mean() >= 0.99
    manifest = json.loads((out / "manifest.json").read_text())
    assert "k2_mlp_weights.h5" in json.dumps(manifest)


@pytest.mark.peer
def test_cli_compile_qkeras_trained(keras2_dir, tmp_path):
    """hls4ml's workflow from the command line: arch.json + weights, trained types, input type."""
    from lightspeed.cli import main

    ref = np.load(keras2_dir / "qcnn6.npz")
    np.save(tmp_path / "x.npy", ref["x"])
    out = tmp_path / "compiled"
    args = ["compile", str(keras2_dir / "qcnn6.json"), "--weights",
            str(keras2_dir / "qcnn6_weights.h5"), "-o", str(out), "--precision", "trained",
            "--input-type", "ap_fixed<16,6>", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert main(["predict", str(out), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy")]) == 0  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "y.npy"), ref["y"])


@pytest.mark.peer
@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_qkeras_firmware_bit_exact(keras2_dir, tmp_path, target):
    """One small QKeras model through Verilog + Verilator and HLS C++, against the emulator."""
    from lightspeed.errors import ToolMissingError
    from lightspeed.firmware import tools

    need = ("find_verilator", "find_make", "find_cxx") if target == "verilog" else (
        "find_ap_types", "find_cxx")  # fmt: skip
    try:
        for tool in need:
            getattr(tools, tool)()
    except ToolMissingError as exc:
        pytest.skip(str(exc))
    from lightspeed import firmware

    ref = np.load(keras2_dir / "qmlp6.npz")
    g = _load2(keras2_dir, "qmlp6", "h5")
    q = lightspeed.quantize(g, precision="trained", input_types={"x": "ap_fixed<16,6>"})
    fw = firmware.generate(q, tmp_path / "fw", target=target)
    r = firmware.check(fw, {"x": ref["x"]}, q=q)
    assert r["exact"], r["mismatches"]
    assert np.array_equal(_out(g, q.predict(ref["x"])), ref["y"])


@pytest.mark.slow
@pytest.mark.peer
def test_qkeras_hls4ml_csim_bit_exact(keras2_dir, tmp_path):
    """The same QKeras 6-bit file through hls4ml 1.3 (C simulation) and lightspeed.

    hls4ml types every layer from the quantizers and sizes the dense results
    exactly, as lightspeed's trained mode does. It leaves out the model's final
    ``QActivation(quantized_bits(10,4))`` (its output stays on the dense
    layer's exact grid), so the comparison is on the graph up to that layer.
    """
    import shutil
    import subprocess

    from tests.models.keras_corpus import HERE, _keras2_env, keras2_python

    if shutil.which("g++") is None:
        pytest.skip("g++ not found: hls4ml's C simulation needs a C++ compiler")
    py, why = keras2_python()
    if py is None:
        pytest.skip(why)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "hls4ml==1.3.0"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    if pip.returncode != 0:
        pytest.skip(f"cannot install hls4ml into the Keras 2 venv: {pip.stderr[-300:]}")
    r = subprocess.run([str(py), str(HERE / "keras2_hls4ml.py"), str(keras2_dir / "qmlp6.h5"),
                        str(keras2_dir / "qmlp6.npz"), str(tmp_path)], capture_output=True,
                       text=True, timeout=900, env=_keras2_env())  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    hls = np.load(tmp_path / "hls4ml.npz")
    g = _load2(keras2_dir, "qmlp6", "h5")
    last = g.node("out_quantized_bits")
    g.outputs, g.nodes = [last.inputs[0]], [n for n in g.nodes if n is not last]
    q = lightspeed.quantize(g, precision="trained", input_types={"x": "ap_fixed<16,6>"})
    x = np.load(keras2_dir / "qmlp6.npz")["x"]
    y = _out(g, q.predict(x))
    assert y.size == hls["y"].size
    assert int((y.reshape(hls["y"].shape) != hls["y"]).sum()) == 0, list(hls["types"])


# ---------------------------------------------------------------------------
# file handling and quantizer parsing (no framework needed)


def test_json_without_weights_and_weights_for_onnx(tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
    with pytest.raises(ModelError, match="--weights"):
        lightspeed.load(arch)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"")
    with pytest.raises(ModelError, match="weights file only goes with a Keras JSON"):
        lightspeed.load(onnx_file, weights=tmp_path / "w.h5")


def test_quantizer_strings_and_refusals():
    from lightspeed.frontends import _qkeras

    q = _qkeras.parse("quantized_bits(6, 2, alpha=1)", "test")
    assert str(_qkeras.bits_type(q)) == "ap_fixed<6,3,RND_CONV,SAT>"
    q = _qkeras.parse("quantized_bits(4, 2, keep_negative=False)", "test")
    assert str(_qkeras.bits_type(q)) == "ap_ufixed<4,2,RND_CONV,SAT>"
    v, _ = _qkeras.quantize_weights(q, np.array([-1.0, 0.3, 9.0]))
    assert list(v) == [0.0, 0.25, 3.75]
    q = _qkeras.parse("quantized_relu(4)", "test")
    assert str(_qkeras.activation_type(q)) == "ap_ufixed<4,0,RND_CONV,SAT>"
    q = _qkeras.parse({"class_name": "quantized_bits", "config": {"bits": 4, "integer": 0,
                                                                 "symmetric": 1}}, "test")  # fmt: skip
    v, t = _qkeras.quantize_weights(q, np.array([0.99, -0.99, 0.03, -0.07]))
    assert list(v) == [0.875, -0.875, 0.0, -0.125] and t.overflow == "SAT_SYM"
    with pytest.raises(UnsupportedOpError, match="alpha='auto'"):
        _qkeras.quantize_weights(_qkeras.parse("quantized_bits(4,0,alpha='auto')", "k"), v)
    with pytest.raises(UnsupportedOpError, match="not a fixed-point cast"):
        _qkeras.activation_type(_qkeras.parse("binary()", "act"))
    with pytest.raises(UnsupportedOpError, match=r"quantized_tanh.*not supported"):
        _qkeras.parse("quantized_tanh(4)", "act")
    with pytest.raises(UnsupportedOpError, match="plain literals"):
        _qkeras.parse("quantized_bits(__import__('os'))", "act")


def test_hgq2_layers_not_taken_for_qkeras():
    """HGQ2 reuses QKeras class names; its layers must never be read as (float) QKeras ones."""
    from lightspeed.frontends.keras import KLayer, KModel, convert

    layers = [
        KLayer("InputLayer", "x", {"batch_shape": [None, 4]}, []),
        KLayer("QDense", "d", {"units": 2}, [["x:0:0"]], "hgq.layers.core.dense"),
    ]
    model = KModel("m", layers, ["x:0:0"], ["d:0:0"], {"d": {}}, 3)
    with pytest.raises(UnsupportedOpError, match="HGQ2 layer"):
        convert(model)


@pytest.mark.parametrize(
    ("cls", "advice"),
    [("BinaryDense", "QDense\\(kernel_quantizer=binary\\(\\)\\)"), ("FixedPointQuantizer", "HGQ2"),
     ("QDepthwiseConv2DBatchnorm", "fold the batchnorm"), ("Mystery", "supported layers")],
)  # fmt: skip
def test_unsupported_layer_advice(cls, advice):
    from lightspeed.frontends.keras import KLayer, KModel, convert

    layers = [KLayer("InputLayer", "x", {"batch_shape": [None, 4]}, []),
              KLayer(cls, "l", {}, [["x:0:0"]])]  # fmt: skip
    with pytest.raises(UnsupportedOpError, match=f"Keras layer {cls} \\('l'\\).*{advice}"):
        convert(KModel("m", layers, ["x:0:0"], ["l:0:0"], {}, 2))


@pytest.mark.parametrize(
    ("dims", "k", "s", "pad"),
    [(2, 3, 2, "same"), (2, 3, 2, "valid"), (2, 1, 2, "valid"), (2, 4, 2, "same"),
     (1, 4, 2, "same"), (1, 3, 3, "valid")],
)  # fmt: skip
def test_conv_transpose_layers_match_keras(dims, k, s, pad):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    shape = (5, 6, 2) if dims == 2 else (7, 2)
    layer = keras.layers.Conv2DTranspose if dims == 2 else keras.layers.Conv1DTranspose
    m = keras.Sequential([keras.Input(shape), layer(3, k, strides=s, padding=pad)])
    for w in m.weights:
        w.assign(rng.normal(0, 0.5, w.shape))
    x = rng.normal(0, 1, (10, *shape)).astype(np.float32)
    g = lightspeed.load(m)
    assert "conv_transpose" in {n.op for n in g.nodes}
    got = run_float(g, {next(iter(g.inputs)): x})[g.outputs[0]]
    np.testing.assert_allclose(got, m.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize(
    ("cls", "kw"),
    [("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": False}),
     ("LSTM", {"return_sequences": True})],
)  # fmt: skip
def test_recurrent_layers_match_keras(cls, kw):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    layer = getattr(keras.layers, cls)(4, **kw)
    m = keras.Sequential(
        [keras.Input((5, 3)), layer, keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    for w in m.weights:
        w.assign(rng.normal(0, 0.5, w.shape))
    x = rng.normal(0, 1, (20, 5, 3)).astype(np.float32)
    g = lightspeed.load(m)
    got = run_float(g, {next(iter(g.inputs)): x})[g.outputs[0]]
    np.testing.assert_allclose(got, m.predict(x, verbose=0), atol=1e-5)
    q = lightspeed.quantize(g, "auto", rng.normal(0, 1, (300, 5, 3)))
    assert np.abs(q.predict(x) - got).max() < 0.05
