"""HGQ2 models: lightspeed at trained precision is bit-exact with HGQ2's own forward pass."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
hgq = pytest.importorskip("hgq")

import lightspeed  # noqa: E402
from lightspeed.errors import UnsupportedOpError  # noqa: E402
from lightspeed.frontends.keras_hgq import import_hgq  # noqa: E402

L = hgq.layers


def scramble_bits(model, seed: int = 0, spread: int = 2) -> None:
    """Give every quantizer element its own bit widths (some pruned), as training would."""
    rng = np.random.default_rng(seed)
    for q in (v for v in model.variables if v.path.split("/")[-1] in ("i", "f", "b")):
        a = keras.ops.convert_to_numpy(q)
        a = a + rng.integers(-spread, spread + 1, a.shape)
        if q.path.endswith("f") or q.path.endswith("b"):  # prune about one element in ten
            a = np.where(rng.random(a.shape) < 0.1, -30.0 if q.path.endswith("f") else 0.0, a)
        q.assign(a)


def grid_inputs(shape, n=300, seed=1, scale=3.0) -> np.ndarray:
    """Inputs on a 2^-10 grid: HGQ2 rounds in float32, which is exact for them."""
    x = np.random.default_rng(seed).normal(0, scale, (n, *shape))
    return np.round(x * 1024) / 1024


def hgq_forward(model, x: np.ndarray) -> np.ndarray:
    y = model(x.astype(np.float32), training=False)
    return keras.ops.convert_to_numpy(y).astype(np.float64)


def assert_bit_exact(model, x: np.ndarray) -> lightspeed.QuantizedModel:
    q = lightspeed.quantize(import_hgq(model), "trained")
    got, want = q.predict(x), hgq_forward(model, x)
    assert got.shape == want.shape
    bad = int(np.count_nonzero(got != want))
    assert bad == 0, f"{bad} of {want.size} outputs differ"
    return q


def test_dense_mlp_trained_a_few_steps():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((12,)), L.QDense(16, activation="relu"), L.QDense(8, activation="relu"), L.QDense(3)]
    )  # fmt: skip
    x = grid_inputs((12,), n=256)
    y = np.eye(3)[np.argmax(x[:, :3], axis=1)]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x.astype(np.float32), y, epochs=2, batch_size=64, verbose=0)
    scramble_bits(model)
    q = assert_bit_exact(model, x)
    kinds = [n.op for n in q.graph.nodes]
    assert kinds.count("fixed_quant") == 3 and kinds.count("dense") == 3
    # per-element widths really differ, and some elements are pruned
    k, i, f = (q.graph.node("q_dense_iq").params[n] for n in "kif")
    assert len(np.unique(i + f)) > 2
    assert np.any(k + i + f <= 0)
    assert np.any(q.graph.node("q_dense").params["weight"] == 0)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_net(padding):
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            L.QConv2D(3, (3, 3), padding=padding, activation="relu"),
            L.QMaxPooling2D((2, 2), strides=1, padding=padding),
            L.QConv2D(6, (2, 2), strides=2, padding=padding, groups=3),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            L.QDense(5),
        ]
    )
    scramble_bits(model, seed=2)
    assert_bit_exact(model, grid_inputs((6, 6, 2), n=100))


def test_conv1d_merges_pooling_and_batchnorm_dense():
    keras.utils.set_random_seed(2)
    inp = keras.Input((10, 3))
    a = L.QConv1D(4, 3, padding="same", dilation_rate=2, activation="relu")(inp)
    b = L.QConv1D(4, 1)(inp)
    s = L.QAdd()([a, b])
    m = L.QMaximum()([s, b])
    d = L.QSubtract()([m, a])
    p = L.QMaxPooling1D(2)(d)
    out = L.QBatchNormDense(2)(keras.layers.Flatten()(p))
    model = keras.Model(inp, out)
    bn = model.layers[-1]  # batch-norm statistics as training would leave them
    bn.moving_mean.assign(np.linspace(-1, 1, 20))
    bn.moving_variance.assign(np.linspace(0.5, 2, 20))
    scramble_bits(model, seed=3)
    q = assert_bit_exact(model, grid_inputs((10, 3), n=100))
    assert list(q.graph.inputs) == [model.inputs[0]._keras_history.operation.name]


def test_input_quantizer_layer_and_sat_modes():
    from hgq.quantizer import QuantizerConfig

    keras.utils.set_random_seed(3)
    iq = QuantizerConfig("kif", "datalane", overflow_mode="SAT", round_mode="TRN", i0=1, f0=3)
    model = keras.Sequential(
        [keras.Input((8,)), L.Quantizer(iq), L.QDense(4, iq_conf=iq, activation="relu"), L.QDense(2)]
    )  # fmt: skip
    scramble_bits(model, seed=4)
    q = assert_bit_exact(model, grid_inputs((8,), scale=4.0))
    assert q.input_types[next(iter(q.graph.inputs))].overflow == "SAT"


def test_load_dispatches_hgq_models_and_files(tmp_path):
    model = keras.Sequential([keras.Input((4,)), L.QDense(3, activation="relu"), L.QDense(2)])
    scramble_bits(model, seed=6)
    g = lightspeed.load(model)
    assert [n.op for n in g.nodes] == ["fixed_quant", "dense", "relu", "fixed_quant", "dense"]
    model.save(tmp_path / "m.keras")
    q = lightspeed.quantize(lightspeed.load(tmp_path / "m.keras"), "trained")
    x = grid_inputs((4,))
    np.testing.assert_array_equal(q.predict(x), hgq_forward(model, x))


def test_unsupported_activation_names_the_layer():
    model = keras.Sequential([keras.Input((4,)), L.QDense(2, activation="tanh", name="head")])
    with pytest.raises(UnsupportedOpError, match=r"'head'.*tanh.*relu"):
        import_hgq(model)


def test_unsupported_layer_names_it_with_a_hint():
    model = keras.Sequential([keras.Input((4,)), L.QEinsumDense("ab,bc->ac", 3, name="mix")])
    with pytest.raises(UnsupportedOpError, match=r"'mix' \(QEinsumDense\).*QDense"):
        import_hgq(model)


def test_rtl_bit_exact_with_hgq2(tmp_path):
    from lightspeed.errors import ToolMissingError
    from lightspeed.firmware import tools

    try:
        tools.find_verilator(), tools.find_make(), tools.find_cxx()
    except ToolMissingError as exc:
        pytest.skip(str(exc))
    from lightspeed import firmware

    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((6,)), L.QDense(5, activation="relu"), L.QDense(3)])
    scramble_bits(model, seed=5)
    x = grid_inputs((6,), n=500)
    q = assert_bit_exact(model, x)
    fw = firmware.generate(q, tmp_path / "fw")
    r = firmware.check(fw, {next(iter(q.graph.inputs)): x}, q=q)
    assert r["vectors"] == 500
    assert r["exact"], r["mismatches"]


def test_hls_csim_bit_exact_with_hgq2(tmp_path):
    from lightspeed.errors import ToolMissingError
    from lightspeed.firmware import tools

    try:
        tools.find_ap_types(), tools.find_cxx()
    except ToolMissingError as exc:
        pytest.skip(str(exc))
    from lightspeed import firmware

    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [keras.Input((5, 5, 1)), L.QConv2D(2, 3, activation="relu"), keras.layers.Flatten(), L.QDense(3)]
    )  # fmt: skip
    scramble_bits(model, seed=7)
    x = grid_inputs((5, 5, 1), n=300)
    q = assert_bit_exact(model, x)
    fw = firmware.generate(q, tmp_path / "fw", target="hls")
    r = firmware.check(fw, {next(iter(q.graph.inputs)): x}, q=q)
    assert r["vectors"] == 300
    assert r["exact"], r["mismatches"]
