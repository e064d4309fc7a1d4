"""Recipe: a small LSTM that flags disruption precursors in a generated time series.

The data are a tokamak-disruption-like toy, generated here with a fixed seed
(nothing is shipped): each sample is a window of ``STEPS`` = 16 time steps of
three signals already of order one,

* ``mode``: a locked-mode amplitude. In a disruptive window it grows
  exponentially from a random onset step; in a quiet one it is noise, and in a
  third of them a transient bump of the same height rises and decays again
  (the shape in time, not the height, tells them apart);
* ``rotation``: the mode rotation frequency, slowing down after the onset
  when the mode locks, drifting at random otherwise;
* ``radiation``: a radiated-power fraction, noisy and only weakly higher
  before a disruption.

Labels: 1 = disruptive, 0 = quiet (half each). The network is an LSTM
(3 -> 8 hidden, batch first) over the 16 steps, its last hidden state into a
Linear 8 -> 2 giving logits (quiet, disruptive). The input ``signals`` has shape
(N, 16, 3); a sequence of any other length is refused with the compiled length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.zoo import _common as c

NAME = "sequence_rnn"
INPUT, OUTPUT = "signals", "logits"
STEPS = 16
FEATURES = 3
HIDDEN = 8
CLASSES = ["quiet", "disruptive"]
N_SAMPLES = 8000
DATA_SEED = 2026


@dataclass
class SequenceSample:
    """Generated windows ``x`` (n, STEPS, FEATURES) float32 and labels (n,) int64."""

    x: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, test_fraction: float, seed: int) -> tuple[SequenceSample, SequenceSample]:
        order = np.random.default_rng(seed).permutation(len(self))
        n_test = round(len(self) * test_fraction)
        test, train = order[:n_test], order[n_test:]
        return (
            SequenceSample(self.x[train], self.labels[train]),
            SequenceSample(self.x[test], self.labels[test]),
        )


def generate(n: int = N_SAMPLES, seed: int = DATA_SEED) -> SequenceSample:
    """``n`` windows of the toy disruption data (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS, dtype=np.float64)[None, :]
    y = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(y)
    dis = y[:, None] == 1
    onset = rng.uniform(4, STEPS, (n, 1))
    after = np.clip(t - onset, 0.0, None)
    grow = rng.uniform(0.1, 0.4, (n, 1))
    amp = rng.uniform(0.05, 0.2, (n, 1))
    # a growing locked mode, or noise with a transient bump in a third of the quiet windows
    growth = amp * (np.exp(grow * after) - 1.0)
    width = rng.uniform(1.0, 3.0, (n, 1))
    bump = (rng.random((n, 1)) < 1 / 3) * amp * 6 * np.exp(-0.5 * ((t - onset) / width) ** 2)
    mode = np.where(dis, growth, bump) + 0.15 * np.abs(rng.normal(size=(n, STEPS)))
    # rotation: slows after the onset when disruptive, random slow drift otherwise
    drift = rng.normal(0, 0.02, (n, 1)) * t
    slow = rng.uniform(0.01, 0.05, (n, 1)) * after
    rotation = 1.0 + np.where(dis, -slow, drift) + 0.05 * rng.normal(size=(n, STEPS))
    radiation = 0.5 + 0.05 * dis + 0.15 * rng.normal(size=(n, STEPS))
    x = np.stack([mode, rotation, radiation], axis=-1).astype(np.float32)
    return SequenceSample(x, y)


def default_split() -> tuple[SequenceSample, SequenceSample]:
    """(train, test) of the generated data the model card reports on."""
    return generate().split(c.TEST_FRACTION, c.SPLIT_SEED)


def inputs(sample: SequenceSample) -> np.ndarray:
    return sample.x


def build() -> Any:
    torch = c.torch_module()
    module: Any = torch.nn.Module

    class Net(module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
            self.fc = torch.nn.Linear(HIDDEN, len(CLASSES))

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    return Net()


def evaluate(
    onnx_path: Path, sample: SequenceSample, predict: c.Predict | None = None
) -> dict[str, float]:
    logits = np.asarray(c.predictor(onnx_path, predict)(inputs(sample)), dtype=np.float64)
    score = logits[:, 1] - logits[:, 0]
    y = sample.labels
    return {
        "accuracy": float(np.mean(logits.argmax(axis=1) == y)),
        "auc": c.roc_auc(score[y == 0], score[y == 1]),
    }


def fit(sample: SequenceSample, epochs: int = 30, seed: int = 0) -> tuple[Any, list[float]]:
    """The trained torch module and its loss per epoch (deterministic: seeded, one thread).

    The LSTM's weights do not depend on the sequence length: exporting the module with
    shorter windows gives the same network compiled for fewer steps."""
    torch = c.seed_everything(seed)
    train_s, _ = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    model = build()
    history = c.train_loop(
        model,
        torch.nn.CrossEntropyLoss(),
        train_s.x,
        train_s.labels,
        epochs=epochs,
        seed=seed,
        lr=1e-2,
        batch_size=128,
    )
    return model, history


def train(
    out_dir: Path, sample: SequenceSample | None = None, epochs: int = 30, seed: int = 0
) -> c.ModelCard:
    sample = sample if sample is not None else generate()
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    model, history = fit(sample, epochs, seed)
    out_dir = Path(out_dir)
    path = c.export_onnx(model, train_s.x, out_dir / f"{NAME}.onnx", INPUT, OUTPUT)
    card = c.ModelCard(
        name=NAME,
        description=f"LSTM {FEATURES}->{HIDDEN} over {STEPS} steps (batch first), last hidden "
        f"state -> Linear {HIDDEN}->2 logits (quiet, disruptive); no Softmax",
        task="classification",
        inputs={INPUT: ["N", STEPS, FEATURES]},
        outputs={OUTPUT: ["N", len(CLASSES)]},
        metrics=evaluate(path, test_s),
        training={
            "data": f"generated by sequence_rnn.generate(n={len(sample)}, seed={DATA_SEED}) "
            "(tokamak-disruption-like toy: locked-mode growth, rotation slow-down, radiation)",
            "n_train": len(train_s),
            "n_test": len(test_s),
            "split": {"test_fraction": c.TEST_FRACTION, "seed": c.SPLIT_SEED},
            "epochs": epochs,
            "optimizer": "Adam lr=1e-2 cosine, batch 128",
            "seed": seed,
            "final_loss": history[-1],
            "standardisation": "none: the generated signals are of order one",
        },
        extra={
            "class_names": list(CLASSES),
            "channels": ["mode", "rotation", "radiation"],
            "sequence_length": STEPS,
        },
    )
    card.save(out_dir / f"{NAME}.json")
    return card
