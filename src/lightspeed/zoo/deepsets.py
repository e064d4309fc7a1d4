"""Recipe: a small DeepSets jet tagger on up to 30 jet constituents.

Input ``constituents`` of shape (N, 6, 30), channels-first like a Conv1d:
for each of the 30 highest-pT constituents (zero-padded) the features
x = pT / jet pT, d-eta = eta - jet eta, d-phi = phi - jet phi wrapped to
[-pi, pi), ln x, Delta R = hypot(d-eta, d-phi) and a 1/0 "slot is a real
particle" flag (all six are 0 in empty slots); build it from a jet file with
constituents via :func:`inputs`. A per-channel standardisation is folded
into the first layer. The per-particle
network phi is two kernel-size-1 Conv1d layers (32 channels, ReLU), the
permutation-invariant pooling a global average over particles, and rho a
32 -> 32 -> 5 MLP giving logits (g, q, W, Z, t). Padded slots go through phi
like the others; the net sees them as all-zero particles (training does too).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data.io import JetSample
from lightspeed.data.schema import CLASSES
from lightspeed.errors import InputError
from lightspeed.zoo import _common as c

NAME = "deepsets"
INPUT, OUTPUT = "constituents", "logits"
N_PARTICLES = 30
N_FEATURES = 6
WIDTH = 32


def build() -> Any:
    torch = c.torch_module()
    nn = torch.nn
    return nn.Sequential(
        nn.Conv1d(N_FEATURES, WIDTH, kernel_size=1),
        nn.ReLU(),
        nn.Conv1d(WIDTH, WIDTH, kernel_size=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(WIDTH, WIDTH),
        nn.ReLU(),
        nn.Linear(WIDTH, len(CLASSES)),
    )


def inputs(sample: JetSample) -> np.ndarray:
    """(n, 6, 30) float32: (x, d-eta, d-phi, ln x, dR, real) of the leading 30 constituents, zero-padded."""
    cons = sample.constituents
    if cons is None or not {"jet_pt", "jet_eta", "jet_phi"} <= set(sample.extras):
        raise InputError(
            "the DeepSets tagger needs constituents: make a file with "
            "`lightspeed data jets --n N -o FILE --constituents 30`"
        )
    cons = cons[:, :N_PARTICLES].astype(np.float64)
    n = cons.shape[1]
    pt, eta, phi = cons[..., 0], cons[..., 1], cons[..., 2]
    real = pt > 0
    out = np.zeros((len(cons), N_FEATURES, N_PARTICLES), dtype=np.float32)
    out[:, 0, :n] = pt / sample.extras["jet_pt"][:, None]
    out[:, 1, :n] = np.where(real, eta - sample.extras["jet_eta"][:, None], 0.0)
    dphi = (phi - sample.extras["jet_phi"][:, None] + math.pi) % (2 * math.pi) - math.pi
    out[:, 2, :n] = np.where(real, dphi, 0.0)
    out[:, 3, :n] = np.where(real, np.log(np.where(real, out[:, 0, :n], 1.0)), 0.0)
    out[:, 4] = np.hypot(out[:, 1], out[:, 2])
    out[:, 5, :n] = real
    return out


def evaluate(
    onnx_path: Path, sample: JetSample, predict: c.Predict | None = None
) -> dict[str, float]:
    return c.classifier_accuracy(onnx_path, inputs(sample), sample.labels, predict)


def train(
    out_dir: Path, sample: JetSample | None = None, epochs: int = 40, seed: int = 0
) -> c.ModelCard:
    sample = c.require_constituents("deepsets", sample, 20000)
    torch = c.seed_everything(seed)
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    x = inputs(train_s)
    mean, std = x.mean(axis=(0, 2)), np.maximum(x.std(axis=(0, 2)), 1e-6)
    model = build()
    history = c.train_loop(
        model,
        torch.nn.CrossEntropyLoss(),
        ((x - mean[None, :, None]) / std[None, :, None]).astype(np.float32),
        train_s.labels.astype(np.int64),
        epochs=epochs,
        seed=seed,
        lr=3e-3,
    )
    c.fold_input_scaling(model[0], mean, std)
    out_dir = Path(out_dir)
    path = c.export_onnx(model, x, out_dir / f"{NAME}.onnx", INPUT, OUTPUT)
    card = c.ModelCard(
        name=NAME,
        description="DeepSets tagger: Conv1d(k=1) 3->32->32, global average over 30 particles, "
        "32 -> 32 -> 5 logits (no Softmax)",
        task="classification",
        inputs={INPUT: ["N", N_FEATURES, N_PARTICLES]},
        outputs={OUTPUT: ["N", len(CLASSES)]},
        metrics=evaluate(path, test_s),
        training={
            **c.constituent_training(
                sample, train_s, test_s, epochs, seed, history, "Adam lr=3e-3 cosine, batch 256"
            ),
            "standardisation": "per-channel, folded into the first Conv1d; the model takes inputs() directly",
        },
        extra={
            "class_names": list(CLASSES),
            "channels": ["pt/jet_pt", "eta-jet_eta", "dphi", "ln(pt/jet_pt)", "dR", "real"],
        },
    )
    card.save(out_dir / f"{NAME}.json")
    return card
