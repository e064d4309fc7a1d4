"""Recipe: a dense autoencoder on the 16 jet features for anomaly detection.

Trained to reconstruct QCD jets (g and q) only; W, Z and top jets then
reconstruct worse. The standardisation is folded into the first layer (the
ONNX takes raw features) and the output is the reconstruction of the
*standardised* features, so the anomaly score is

    score = mean_i ((x_i - mean_i) / std_i - out_i)^2

with ``mean``/``std`` in the model card (``info('autoencoder').extra``);
:func:`anomaly_score` computes it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data.io import JetSample, load_default_jets
from lightspeed.data.schema import CLASSES, FEATURES
from lightspeed.zoo import _common as c

NAME = "autoencoder"
INPUT, OUTPUT = "features", "reconstruction"
SIZES = (len(FEATURES), 32, 8, 32, len(FEATURES))
BACKGROUND = ("g", "q")


def build() -> Any:
    torch = c.torch_module()
    nn = torch.nn
    layers: list[Any] = []
    for a, b in itertools.pairwise(SIZES):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # linear output


def inputs(sample: JetSample) -> np.ndarray:
    return sample.features.astype(np.float32)


def anomaly_score(x: np.ndarray, reconstruction: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """Mean squared error between the standardised input and the reconstruction, per jet."""
    z = (np.asarray(x, dtype=np.float64) - np.asarray(mean)) / np.asarray(std)
    return np.mean((z - reconstruction) ** 2, axis=1)


def _scaler(onnx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    card = c.ModelCard.load(onnx_path.with_suffix(".json"))
    return np.asarray(card.extra["mean"]), np.asarray(card.extra["std"])


def evaluate(
    onnx_path: Path, sample: JetSample, predict: c.Predict | None = None
) -> dict[str, float]:
    """ROC AUC of the anomaly score for each signal class (W, Z, t) against QCD (g + q)."""
    mean, std = _scaler(Path(onnx_path))
    x = inputs(sample)
    score = anomaly_score(x, c.predictor(onnx_path, predict)(x), mean, std)
    bkg = np.isin(sample.labels, [CLASSES.index(b) for b in BACKGROUND])
    metrics = {"mse_qcd": float(score[bkg].mean())}
    for cls in ("w", "z", "t"):
        sig = sample.labels == CLASSES.index(cls)
        metrics[f"auc_{cls}_vs_qcd"] = c.roc_auc(score[bkg], score[sig])
    return metrics


def train(
    out_dir: Path, sample: JetSample | None = None, epochs: int = 60, seed: int = 0
) -> c.ModelCard:
    torch = c.seed_everything(seed)
    sample = sample if sample is not None else load_default_jets()
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    bkg = np.isin(train_s.labels, [CLASSES.index(b) for b in BACKGROUND])
    x = inputs(train_s)[bkg]
    mean, std = c.fit_scaler(x)
    z = ((x - mean) / std).astype(np.float32)
    model = build()
    history = c.train_loop(model, torch.nn.MSELoss(), z, z, epochs=epochs, seed=seed, lr=2e-3)
    c.fold_input_scaling(model[0], mean, std)
    out_dir = Path(out_dir)
    path = c.export_onnx(model, x, out_dir / f"{NAME}.onnx", INPUT, OUTPUT)
    card = c.ModelCard(
        name=NAME,
        description="16 -> 32 -> 8 -> 32 -> 16 ReLU autoencoder trained on QCD jets; "
        "score = MSE(standardised input, output)",
        task="anomaly detection",
        inputs={INPUT: ["N", len(FEATURES)]},
        outputs={OUTPUT: ["N", len(FEATURES)]},
        metrics={},
        training={
            "data": "QCD (g, q) jets of the training split",
            "n_train": int(bkg.sum()),
            "n_test": len(test_s),
            "split": {"test_fraction": c.TEST_FRACTION, "seed": c.SPLIT_SEED},
            "epochs": epochs,
            "optimizer": "Adam lr=2e-3 cosine, batch 256, MSE loss",
            "seed": seed,
            "final_loss": history[-1],
            "standardisation": "folded into the first layer; output is in standardised units",
        },
        extra={"mean": c.tolist(mean), "std": c.tolist(std), "feature_names": list(FEATURES)},
    )
    card.save(out_dir / f"{NAME}.json")  # evaluate() reads the scaler from the card
    card.metrics = evaluate(path, test_s)
    card.save(out_dir / f"{NAME}.json")
    return card
