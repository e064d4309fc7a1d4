"""Recipe: the 16 -> 64 -> 32 -> 32 -> 5 jet tagger MLP (the hls4ml benchmark architecture).

Trained on standardised features; the standardisation is then folded into the
first Dense layer so the ONNX model takes the raw 16 hls4ml features. The
output is 5 logits (no Softmax): argmax is the class, softmax(logits) the
probabilities.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data.io import JetSample, load_default_jets
from lightspeed.data.schema import CLASSES, FEATURES
from lightspeed.zoo import _common as c

NAME = "jet_tagger"
INPUT, OUTPUT = "features", "logits"
HIDDEN = (64, 32, 32)


def build() -> Any:
    torch = c.torch_module()
    nn = torch.nn
    sizes = (len(FEATURES), *HIDDEN)
    layers: list[Any] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], len(CLASSES)))
    return nn.Sequential(*layers)


def inputs(sample: JetSample) -> np.ndarray:
    return sample.features.astype(np.float32)


def evaluate(
    onnx_path: Path, sample: JetSample, predict: c.Predict | None = None
) -> dict[str, float]:
    """Accuracy and one-vs-rest ROC AUC per class of the model on ``sample``."""
    logits = c.predictor(onnx_path, predict)(inputs(sample))
    metrics = {"accuracy": float(np.mean(logits.argmax(axis=1) == sample.labels))}
    for k, cls in enumerate(CLASSES):
        score = (
            logits[:, k]
            - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
            - logits.max(1)
        )
        metrics[f"auc_{cls}"] = c.roc_auc(score[sample.labels != k], score[sample.labels == k])
    return metrics


def train(
    out_dir: Path, sample: JetSample | None = None, epochs: int = 40, seed: int = 0
) -> c.ModelCard:
    torch = c.seed_everything(seed)
    sample = sample if sample is not None else load_default_jets()
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    x = inputs(train_s)
    mean, std = c.fit_scaler(x)
    model = build()
    history = c.train_loop(
        model,
        torch.nn.CrossEntropyLoss(),
        (x - mean) / std,
        train_s.labels.astype(np.int64),
        epochs=epochs,
        seed=seed,
        weight_decay=1e-5,
    )
    c.fold_input_scaling(model[0], mean, std)
    path = c.export_onnx(model, x, Path(out_dir) / f"{NAME}.onnx", INPUT, OUTPUT)
    card = c.ModelCard(
        name=NAME,
        description="16 -> 64 -> 32 -> 32 -> 5 ReLU MLP jet tagger (g, q, W, Z, t); outputs logits, no Softmax",
        task="classification",
        inputs={INPUT: ["N", len(FEATURES)]},
        outputs={OUTPUT: ["N", len(CLASSES)]},
        metrics=evaluate(path, test_s),
        training={
            "data": sample.meta.get("generator", "custom sample"),
            "n_train": len(train_s),
            "n_test": len(test_s),
            "split": {"test_fraction": c.TEST_FRACTION, "seed": c.SPLIT_SEED},
            "epochs": epochs,
            "optimizer": "Adam lr=3e-3 cosine, batch 256, weight decay 1e-5",
            "seed": seed,
            "final_loss": history[-1],
            "standardisation": "folded into the first layer; the model takes raw features",
        },
        extra={"feature_names": list(FEATURES), "class_names": list(CLASSES)},
    )
    card.save(Path(out_dir) / f"{NAME}.json")
    return card
