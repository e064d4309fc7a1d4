"""Reference models: shipped ONNX files load, are well-formed and reproduce their model cards."""

from __future__ import annotations

import numpy as np
import pytest

from lightspeed import zoo
from lightspeed.data import load_default_jets
from lightspeed.data.io import JetSample
from lightspeed.errors import InputError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

MODELS = [
    "autoencoder",
    "deepsets",
    "facile",
    "jedinet",
    "jet_tagger",
    "jet_tagger_q6",
    "sequence_rnn",
    "transformer",
]


@pytest.fixture(scope="module")
def test_split() -> JetSample:
    return load_default_jets().split(0.25, 0)[1]


def test_list_and_paths() -> None:
    assert zoo.list_models() == MODELS
    for name in MODELS:
        path = zoo.model_path(name)
        assert path.suffix == ".onnx" and path.stat().st_size < 200_000
    with pytest.raises(InputError, match="unknown zoo model"):
        zoo.model_path("resnet")


@pytest.mark.parametrize("name", MODELS)
def test_onnx_well_formed(name) -> None:
    model = onnx.load(str(zoo.model_path(name)))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    card = zoo.info(name)
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert list(card.inputs) == [inp.name] and list(card.outputs) == [out.name]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == card.inputs[inp.name] and dims[0] == "N"
    assert out.type.tensor_type.shape.dim[0].dim_param == "N"
    last = next(n for n in model.graph.node if out.name in n.output)
    assert last.op_type != "Softmax"  # logits (the transformer's attention has inner ones)


@pytest.mark.parametrize(
    "name", ["jet_tagger", "autoencoder", "facile", "jet_tagger_q6", "sequence_rnn"]
)
def test_documented_metrics_on_shipped_sample(name, test_split) -> None:
    got = zoo.evaluate(name, test_split if name != "sequence_rnn" else None)
    want = zoo.info(name).metrics
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=2e-3), k


def test_metrics_are_meaningful(test_split) -> None:
    tagger = zoo.info("jet_tagger").metrics
    assert (
        tagger["accuracy"] > 0.65
        and min(v for k, v in tagger.items() if k.startswith("auc")) > 0.85
    )
    ae = zoo.info("autoencoder").metrics
    assert ae["auc_t_vs_qcd"] > 0.75 and ae["auc_w_vs_qcd"] > 0.55
    fac = zoo.info("facile").metrics
    assert abs(fac["median_rel_error"]) < 0.01
    assert fac["resolution_68"] < fac["baseline_sum_resolution_68"]
    assert fac["rms_rel_error"] < fac["baseline_sum_rms_rel_error"]
    assert zoo.info("deepsets").metrics["accuracy"] > 0.5


def test_tagger_takes_raw_features(test_split) -> None:
    """Standardisation is folded in: raw features give the documented accuracy without scaling."""
    from lightspeed.zoo._common import run_onnx

    logits = run_onnx(zoo.model_path("jet_tagger"), test_split.features)
    assert logits.shape == (len(test_split), 5)
    acc = np.mean(logits.argmax(1) == test_split.labels)
    assert acc == pytest.approx(zoo.info("jet_tagger").metrics["accuracy"], abs=1e-3)
    # standardising again must hurt: the model expects raw inputs
    x = test_split.features
    bad = run_onnx(zoo.model_path("jet_tagger"), (x - x.mean(0)) / x.std(0))
    assert np.mean(bad.argmax(1) == test_split.labels) < acc - 0.1


def test_deepsets_inputs_and_run() -> None:
    from lightspeed.zoo import deepsets
    from lightspeed.zoo._common import run_onnx

    n = 4
    cons = np.zeros((n, 40, 3), np.float32)
    cons[:, :2] = [[100.0, 0.5, 3.1], [50.0, 0.7, -3.1]]
    extras = {
        "constituents": cons,
        "jet_pt": np.full(n, 150.0, np.float32),
        "jet_eta": np.full(n, 0.6, np.float32),
        "jet_phi": np.full(n, 3.14, np.float32),
    }
    s = JetSample(np.zeros((n, 16), np.float32), np.zeros(n, np.int64), extras)
    x = deepsets.inputs(s)
    assert x.shape == (n, 6, 30)
    np.testing.assert_allclose(x[0, 0, :2], [100 / 150, 50 / 150], rtol=1e-6)
    np.testing.assert_allclose(x[0, 1, :2], [-0.1, 0.1], atol=1e-6)
    # phi wraps around: 3.1 - 3.14 and -3.1 - 3.14 + 2 pi
    np.testing.assert_allclose(x[0, 2, :2], [-0.04, 2 * np.pi - 6.24], atol=1e-5)
    assert (x[:, :, 2:] == 0).all()  # empty slots are all-zero
    assert run_onnx(zoo.model_path("deepsets"), x).shape == (n, 5)
    with pytest.raises(InputError, match="constituents"):
        deepsets.inputs(load_default_jets().subset(slice(0, 3)))


def test_fold_input_scaling_exact() -> None:
    torch = pytest.importorskip("torch")
    from lightspeed.zoo._common import fold_input_scaling

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for layer, shape in ((torch.nn.Linear(5, 3), (7, 5)), (torch.nn.Conv1d(5, 3, 1), (7, 5, 4))):
        mean, std = rng.normal(size=5), rng.uniform(0.5, 3, 5)
        x = rng.normal(size=shape) * 4
        bshape = (1, 5) + (1,) * (len(shape) - 2)
        z = torch.as_tensor((x - mean.reshape(bshape)) / std.reshape(bshape), dtype=torch.float32)
        with torch.no_grad():
            want = layer(z).numpy()
            fold_input_scaling(layer, mean, std)
            got = layer(torch.as_tensor(x, dtype=torch.float32)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_train_recipe_small(tmp_path) -> None:
    pytest.importorskip("torch")
    s = load_default_jets().subset(slice(0, 3000))
    card = zoo.train("jet_tagger", tmp_path, sample=s, epochs=3)
    assert (tmp_path / "jet_tagger.onnx").exists() and (tmp_path / "jet_tagger.json").exists()
    assert card.training["n_train"] == 2250 and card.training["epochs"] == 3
    assert card.metrics["accuracy"] > 0.4  # well above the 0.2 of guessing after 3 epochs
    again = zoo.evaluate("jet_tagger", s.split(0.25, 0)[1], path=tmp_path / "jet_tagger.onnx")
    assert again["accuracy"] == pytest.approx(card.metrics["accuracy"], abs=1e-9)
    with pytest.raises(InputError, match="constituents"):
        zoo.train("deepsets", tmp_path)


@pytest.mark.slow
def test_deepsets_accuracy_on_fresh_jets(tmp_path) -> None:
    pytest.importorskip("pythia8mc")
    from lightspeed.data import load_jets
    from lightspeed.data._physics import PhysicsConfig
    from lightspeed.data.jets import JetGenConfig, generate_jets

    cfg = JetGenConfig(
        n_jets=1500, seed=99, chunk_size=150, physics=PhysicsConfig(n_constituents=30)
    )
    s = load_jets(generate_jets(tmp_path / "c.h5", cfg, workers=2, progress=False))
    got = zoo.evaluate("deepsets", s)["accuracy"]
    # 1500 fresh jets: binomial error ~1.3%; allow 4 sigma around the documented accuracy
    assert got == pytest.approx(zoo.info("deepsets").metrics["accuracy"], abs=0.055)


@pytest.mark.parametrize(
    "name", ["jet_tagger", "autoencoder", "facile", "jet_tagger_q6", "sequence_rnn"]
)
def test_fixed_point_metrics(name, test_split) -> None:
    """Auto-precision fixed point reproduces the card's fixed metrics and stays close to float."""
    got = zoo.evaluate(name, test_split if name != "sequence_rnn" else None, quantized=True)
    card = zoo.info(name)
    for k, v in card.metrics_fixed.items():
        assert got[k] == pytest.approx(v, abs=5e-3), k
    if name == "jet_tagger":
        assert got["accuracy"] == pytest.approx(card.metrics["accuracy"], abs=0.01)
    if name == "sequence_rnn":
        assert got["accuracy"] == pytest.approx(card.metrics["accuracy"], abs=0.005)
    if name == "facile":
        assert got["resolution_68"] == pytest.approx(card.metrics["resolution_68"], abs=0.002)


def test_missing_torch_gives_install_command(tmp_path, monkeypatch) -> None:
    import sys

    from lightspeed.errors import ToolMissingError

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ToolMissingError, match="pip install"):
        zoo.train("jet_tagger", tmp_path, epochs=1)
    # the shipped models still load and run without torch
    assert zoo.evaluate("facile")["rms_rel_error"] > 0


def test_sequence_rnn_data_model_and_recipe(tmp_path) -> None:
    """The generated series is deterministic and learnable; the recipe trains in seconds."""
    pytest.importorskip("torch")
    from lightspeed.zoo import sequence_rnn as rec

    a, b = rec.generate(500), rec.generate(500)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.shape == (500, rec.STEPS, rec.FEATURES) and a.x.dtype == np.float32
    assert 0.4 < a.labels.mean() < 0.6 and np.abs(a.x).max() < 50
    assert zoo.info("sequence_rnn").metrics["accuracy"] > 0.85
    card = zoo.train("sequence_rnn", tmp_path, sample=rec.generate(1500), epochs=4)
    assert card.training["n_train"] == 1125 and card.metrics["accuracy"] > 0.6
    # the shipped model refuses a window of another length, naming the compiled one
    q = zoo.quantize("sequence_rnn", n_calibration=500)
    with pytest.raises(InputError, match="compiled for exactly 16"):
        q.predict(np.zeros((2, 20, 3)))


def test_transformer_compiles_with_attention_and_layernorm() -> None:
    """The shipped transformer imports as dense/matmul/softmax/layernorm and agrees at auto."""
    import lightspeed
    from lightspeed.zoo._common import run_onnx

    path = zoo.model_path("transformer")
    g = lightspeed.load(path)
    ops = [n.op for n in g.nodes]
    assert ops.count("matmul") == 2 and ops.count("layernorm") == 2 and "softmax" in ops
    rng = np.random.default_rng(0)
    x = np.zeros((400, 16, 6), dtype=np.float32)  # jet-like: leading particles real
    n_real = rng.integers(4, 17, 400)
    for i, k in enumerate(n_real):
        pt = np.sort(rng.exponential(1.0, k))[::-1]
        x[i, :k, 0] = pt / pt.sum()
        x[i, :k, 1:3] = rng.normal(0, 0.15, (k, 2))
        x[i, :k, 3] = np.log(x[i, :k, 0])
        x[i, :k, 4] = np.hypot(x[i, :k, 1], x[i, :k, 2])
        x[i, :k, 5] = 1
    ref = run_onnx(path, x)
    y = lightspeed.quantize(g, "auto", x).predict(x)
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.98


def test_transformer_needs_constituents(test_split) -> None:
    with pytest.raises(InputError, match="--constituents"):
        zoo.recipe("transformer").inputs(test_split)
