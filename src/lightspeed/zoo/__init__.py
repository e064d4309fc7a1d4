"""Reference models: shipped trained ONNX files, their model cards and torch training recipes.

>>> from lightspeed import zoo
>>> zoo.list_models()
['autoencoder', 'deepsets', 'facile', 'jet_tagger', 'jet_tagger_q6', 'sequence_rnn']
>>> zoo.model_path("jet_tagger")        # raw 16 hls4ml features -> 5 logits
>>> zoo.info("jet_tagger").metrics      # float accuracy on the shipped sample's test split
>>> zoo.evaluate("jet_tagger", quantized=True)   # bit-exact fixed point at auto precision
>>> zoo.train("jet_tagger", "out/")     # re-train with torch (optional extra)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from lightspeed.errors import InputError
from lightspeed.zoo._common import ModelCard

__all__ = [
    "MODELS_DIR",
    "ModelCard",
    "evaluate",
    "info",
    "list_models",
    "model_path",
    "recipe",
    "train",
    "unfold_input_scaling",
]

MODELS_DIR = Path(__file__).parent / "models"
# models whose inputs are jet constituents, which the shipped sample does not have
CONSTITUENT_MODELS = ("deepsets", "jedinet", "transformer")
_RECIPES = {
    "jet_tagger": "lightspeed.zoo.jet_tagger",
    "jet_tagger_q6": "lightspeed.zoo.jet_tagger_q6",
    "deepsets": "lightspeed.zoo.deepsets",
    "jedinet": "lightspeed.zoo.jedinet",
    "autoencoder": "lightspeed.zoo.autoencoder",
    "facile": "lightspeed.zoo.facile",
    "sequence_rnn": "lightspeed.zoo.sequence_rnn",
    "transformer": "lightspeed.zoo.transformer",
}


def list_models() -> list[str]:
    """Names of the reference models that ship a trained ONNX file."""
    return sorted(n for n in _RECIPES if (MODELS_DIR / f"{n}.onnx").exists())


def _check(name: str) -> None:
    if name not in _RECIPES:
        raise InputError(f"unknown zoo model '{name}': choose from {', '.join(sorted(_RECIPES))}")


def model_path(name: str) -> Path:
    """Path of the shipped trained ONNX model ``name``."""
    _check(name)
    path = MODELS_DIR / f"{name}.onnx"
    if not path.exists():
        raise InputError(
            f"zoo model '{name}' has no shipped ONNX; train it with lightspeed.zoo.train('{name}', DIR)"
        )
    return path


def info(name: str) -> ModelCard:
    """The model card of ``name``: inputs, outputs, training settings and float metrics."""
    _check(name)
    return ModelCard.load(MODELS_DIR / f"{name}.json")


def recipe(name: str) -> ModuleType:
    """The recipe module of ``name`` (``build``, ``inputs``, ``train``, ``evaluate``)."""
    _check(name)
    return importlib.import_module(_RECIPES[name])


def train(name: str, out_dir: str | os.PathLike[str], **kwargs: Any) -> ModelCard:
    """Train ``name`` with its torch recipe; writes ``out_dir/<name>.onnx`` and ``<name>.json``.

    Keyword arguments go to the recipe (``sample=``, ``epochs=``, ``seed=``, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return recipe(name).train(out, **kwargs)


def default_split(name: str) -> tuple[Any, Any]:
    """(train, test) split the model card of ``name`` reports on (shipped sample, 25% test, seed 0).

    The DeepSets tagger needs constituents, which the shipped sample does not have:
    pass your own sample to :func:`evaluate` / :func:`quantize` for it. A recipe with
    its own data (the recurrent ``sequence_rnn``, on a generated time series) gives its
    own ``default_split``.
    """
    from lightspeed.data.io import load_default_jets
    from lightspeed.zoo._common import SPLIT_SEED, TEST_FRACTION

    _check(name)
    own = getattr(recipe(name), "default_split", None)
    if own is not None:
        return own()
    if name in CONSTITUENT_MODELS:
        raise InputError(
            f"the {name} tagger needs a sample with constituents: "
            "lightspeed data jets --n 2000 --constituents 30 -o FILE, then pass load_jets(FILE)"
        )
    return load_default_jets().split(TEST_FRACTION, SPLIT_SEED)


def quantize(
    name: str,
    calibration: Any = None,
    precision: str | None = None,
    path: str | os.PathLike[str] | None = None,
    n_calibration: int = 5000,
) -> Any:
    """Quantize the zoo model with :func:`lightspeed.quantize`; returns the QuantizedModel.

    ``calibration`` is a sample (JetSample, or the recipe's own; its recipe inputs are
    used) or an input array;
    by default the first ``n_calibration`` jets of the training split. ``precision``:
    the recipe's (``"trained"`` for the QAT models, which need no calibration), else auto.
    """
    import numpy as np

    from lightspeed.frontends import load_model
    from lightspeed.quantize import quantize

    mod = recipe(name)
    chosen: str = precision or str(getattr(mod, "PRECISION", "auto"))
    graph = load_model(Path(path) if path is not None else model_path(name))
    if chosen == "trained":
        return quantize(graph, precision=chosen)
    if calibration is None:
        calibration = default_split(name)[0]
    x = calibration if isinstance(calibration, np.ndarray) else mod.inputs(calibration)
    return quantize(graph, precision=chosen, calibration=x[:n_calibration])


def evaluate(
    name: str,
    sample: Any = None,
    path: str | os.PathLike[str] | None = None,
    quantized: bool = False,
    calibration: Any = None,
) -> dict[str, float]:
    """Metrics of the ONNX model (shipped, or ``path``) on ``sample``.

    Without ``sample``: the test split of the shipped jets that the model card
    reports. ``quantized=True`` evaluates the bit-exact fixed-point emulation
    at auto precision (calibrated on ``calibration``, default the training split)
    instead of the float model.
    """
    mod = recipe(name)
    onnx_path = Path(path) if path is not None else model_path(name)
    if sample is None:
        sample = default_split(name)[1]
    predict = None
    if quantized:
        if calibration is None:
            calibration = sample if name in CONSTITUENT_MODELS else default_split(name)[0]
        predict = quantize(name, calibration, path=onnx_path).predict
    return mod.evaluate(onnx_path, sample, predict)


def unfold_input_scaling(graph, mean, std):
    """A copy of ``graph`` taking standardised inputs ``(x - mean) / std``.

    The shipped models fold their input standardisation into the first dense
    layer (so they take raw features); this undoes it: ``W' = W*std``,
    ``b' = b + mean @ W``. Useful for QAT and low-bit firmware, which want
    inputs of order one.
    """
    g = graph.copy()
    first = g.nodes[0]
    if first.op != "dense":
        raise InputError(f"the first node of {graph.name!r} is {first.op}, not a dense layer")
    w, b = first.params["weight"], first.params.get("bias", 0.0)
    first.params["weight"] = w * std[:, None]
    first.params["bias"] = b + mean @ w
    return g
