"""Recipe: a FACILE-like small regression network, 15 inputs -> 36 -> 36 -> 1.

FACILE (CMS) regresses the HCAL energy of a channel from 15 inputs. Our
stand-in target, defined on the generated jets: from the scalar pT sums of the
jet constituents in 15 equal annuli of Delta R (0 to 0.8 around the jet axis,
the ``rings`` of a jet file; GeV), predict the pT of the generator-level
parton, boson or top the jet is matched to (``truth_pt``, GeV). The network
learns the out-of-cone and class-dependent response correction that the plain
sum of the rings misses. Input and output scalings are folded into the first
and last layers: the ONNX takes ring pT in GeV and returns pT in GeV.
The loss is a Huber loss with a small delta, close to L1, so the net fits the
core of the response rather than chasing the out-of-cone tails.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data.io import JetSample, load_default_jets
from lightspeed.data.schema import N_RINGS
from lightspeed.errors import InputError
from lightspeed.zoo import _common as c

NAME = "facile"
INPUT, OUTPUT = "rings", "pt"
SIZES = (N_RINGS, 36, 36, 1)
PT_SCALE = 500.0  # GeV; inputs and target are divided by it for training


def build() -> Any:
    torch = c.torch_module()
    nn = torch.nn
    layers: list[Any] = []
    for a, b in itertools.pairwise(SIZES):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def inputs(sample: JetSample) -> np.ndarray:
    if "rings" not in sample.extras:
        raise InputError(
            "the FACILE-like model needs a jet file with 'rings' (made by lightspeed data jets)"
        )
    return sample.extras["rings"].astype(np.float32)


def _resolution(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    r = pred / truth - 1.0
    q16, q50, q84 = np.percentile(r, [16, 50, 84])
    return float(q50), float(0.5 * (q84 - q16)), float(np.sqrt(np.mean(r**2)))


def evaluate(
    onnx_path: Path, sample: JetSample, predict: c.Predict | None = None
) -> dict[str, float]:
    """Bias (median) and resolution (half 16-84% width, RMS) of pred/truth - 1; also for sum(rings)."""
    x = inputs(sample)
    truth = sample.extras["truth_pt"].astype(np.float64)
    pred = c.predictor(onnx_path, predict)(x)[:, 0].astype(np.float64)
    bias, width, rms = _resolution(pred, truth)
    b0, w0, r0 = _resolution(x.sum(axis=1).astype(np.float64), truth)
    return {
        "median_rel_error": bias,
        "resolution_68": width,
        "rms_rel_error": rms,
        "baseline_sum_median_rel_error": b0,
        "baseline_sum_resolution_68": w0,
        "baseline_sum_rms_rel_error": r0,
    }


def train(
    out_dir: Path, sample: JetSample | None = None, epochs: int = 60, seed: int = 0
) -> c.ModelCard:
    torch = c.seed_everything(seed)
    sample = sample if sample is not None else load_default_jets()
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    x = inputs(train_s)
    y = train_s.extras["truth_pt"].astype(np.float64)[:, None]
    # One global scale for all rings (not per-column standardisation): the plain sum of
    # the rings stays a simple direction for the net, which then only learns the correction.
    mean, std = np.zeros(N_RINGS), np.full(N_RINGS, PT_SCALE)
    ym, ys = np.zeros(1), np.full(1, PT_SCALE)
    model = build()
    history = c.train_loop(
        model,
        torch.nn.HuberLoss(delta=0.02),
        (x / PT_SCALE).astype(np.float32),
        (y / PT_SCALE).astype(np.float32),
        epochs=epochs,
        seed=seed,
        lr=2e-3,
    )
    c.fold_input_scaling(model[0], mean, std)
    c.fold_output_scaling(model[-1], ym, ys)
    out_dir = Path(out_dir)
    path = c.export_onnx(model, x, out_dir / f"{NAME}.onnx", INPUT, OUTPUT)
    card = c.ModelCard(
        name=NAME,
        description="FACILE-like 15 -> 36 -> 36 -> 1 ReLU regression: ring pT sums (GeV) -> matched truth pT (GeV)",
        task="regression",
        inputs={INPUT: ["N", N_RINGS]},
        outputs={OUTPUT: ["N", 1]},
        metrics=evaluate(path, test_s),
        training={
            "data": "all classes of the training split",
            "n_train": len(train_s),
            "n_test": len(test_s),
            "split": {"test_fraction": c.TEST_FRACTION, "seed": c.SPLIT_SEED},
            "epochs": epochs,
            "optimizer": "Adam lr=2e-3 cosine, batch 256, Huber loss (delta 0.02) on pT / 500 GeV",
            "seed": seed,
            "final_loss": history[-1],
            "standardisation": "the 1/500 GeV input and 500 GeV output scalings are folded into the first and last layers",
        },
        extra={"target": "truth_pt", "rings_max_dr": 0.8, "n_rings": N_RINGS},
    )
    card.save(out_dir / f"{NAME}.json")
    return card
