"""Recipe: a JEDI-net-style interaction-network jet tagger on 16 jet constituents.

Input ``constituents`` of shape (N, 16, 3), one row per constituent (the 16
highest-pT, zero-padded): x = pT / jet pT, d-eta and d-phi (wrapped to
[-pi, pi)) relative to the jet axis. The graph is fixed and fully connected
(16 * 15 = 240 directed edges, receiver/sender lists as constants), as in
JEDI-net (Moreno et al., EPJC 80 (2020) 58):

* edge network f_R: [x_receiver, x_sender] (6) -> 8 (ReLU) -> 4, on every edge;
* aggregation: the messages summed per receiver (``scatter_add``, a segment sum);
* node network f_O: [x, aggregate] (7) -> 8 (ReLU) -> 8, on every constituent;
* the node outputs summed over constituents, then phi_O: 8 -> 5 logits (g, q, W, Z, t).

Written in plain PyTorch (``x[:, receivers]``, ``scatter_add``): PyTorch Geometric's
``MessagePassing`` with sum aggregation computes the same and is not needed. Exported
at ONNX opset 17 (ScatterElements with ``reduction="add"`` needs opset >= 16).
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

NAME = "jedinet"
INPUT, OUTPUT = "constituents", "logits"
N_PARTICLES = 16
N_FEATURES = 3
HIDDEN, MESSAGE, NODE_OUT = 8, 4, 8
OPSET = 17


def edges(n: int) -> tuple[list[int], list[int]]:
    """Receivers and senders of the fully connected directed graph on ``n`` nodes."""
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    return [i for i, _ in pairs], [j for _, j in pairs]


def build(n_particles: int = N_PARTICLES) -> Any:
    torch = c.torch_module()
    nn = torch.nn

    module: Any = nn.Module  # torch is optional: typed as Any here

    class InteractionNetwork(module):
        def __init__(self) -> None:
            super().__init__()
            recv, send = edges(n_particles)
            self.register_buffer("receivers", torch.tensor(recv))
            self.register_buffer("senders", torch.tensor(send))
            p = N_FEATURES
            self.f_r = nn.Sequential(
                nn.Linear(2 * p, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, MESSAGE)
            )
            self.f_o = nn.Sequential(
                nn.Linear(p + MESSAGE, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, NODE_OUT)
            )
            self.phi_o = nn.Linear(NODE_OUT, len(CLASSES))

        def forward(self, x: Any) -> Any:  # (batch, particles, features)
            m = self.f_r(torch.cat([x[:, self.receivers], x[:, self.senders]], dim=-1))
            index = self.receivers.view(1, -1, 1).expand_as(m)
            agg = m.new_zeros(m.shape[0], x.shape[1], m.shape[2]).scatter_add(1, index, m)
            o = self.f_o(torch.cat([x, agg], dim=-1))
            return self.phi_o(o.sum(dim=1))

    return InteractionNetwork()


def inputs(sample: JetSample, n_particles: int = N_PARTICLES) -> np.ndarray:
    """(n, 16, 3) float32: (pT/jet pT, d-eta, d-phi) of the leading 16 constituents, zero-padded."""
    cons = sample.constituents
    if cons is None or not {"jet_pt", "jet_eta", "jet_phi"} <= set(sample.extras):
        raise InputError(
            "the JEDI-net tagger needs constituents: make a file with "
            "`lightspeed data jets --n N -o FILE --constituents 30`"
        )
    cons = cons[:, :n_particles].astype(np.float64)
    n = cons.shape[1]
    pt, eta, phi = cons[..., 0], cons[..., 1], cons[..., 2]
    real = pt > 0
    out = np.zeros((len(cons), n_particles, N_FEATURES), dtype=np.float32)
    out[:, :n, 0] = pt / sample.extras["jet_pt"][:, None]
    out[:, :n, 1] = np.where(real, eta - sample.extras["jet_eta"][:, None], 0.0)
    dphi = (phi - sample.extras["jet_phi"][:, None] + math.pi) % (2 * math.pi) - math.pi
    out[:, :n, 2] = np.where(real, dphi, 0.0)
    return out


def export(model: Any, example: np.ndarray, path: Path) -> Path:
    """ONNX opset 17 (ScatterElements with reduction) with a symbolic batch dimension."""
    return c.export_onnx(model, example, path, INPUT, OUTPUT, opset=OPSET)


def evaluate(
    onnx_path: Path, sample: JetSample, predict: c.Predict | None = None
) -> dict[str, float]:
    return c.classifier_accuracy(onnx_path, inputs(sample), sample.labels, predict)


def train(
    out_dir: Path, sample: JetSample | None = None, epochs: int = 60, seed: int = 0
) -> c.ModelCard:
    sample = c.require_constituents("jedinet", sample, 5000)
    torch = c.seed_everything(seed)
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    x = inputs(train_s)
    mean = x.mean(axis=(0, 1)).astype(np.float64)
    std = np.maximum(x.std(axis=(0, 1)).astype(np.float64), 1e-6)
    model = build()
    history = c.train_loop(
        model, torch.nn.CrossEntropyLoss(), ((x - mean) / std).astype(np.float32),
        train_s.labels.astype(np.int64), epochs=epochs, seed=seed, lr=5e-3,
    )  # fmt: skip
    # the standardisation goes into the layers that read x: both halves of f_R's first
    # layer and the x part of f_O's (the aggregate part keeps mean 0, std 1)
    zeros, ones = np.zeros(MESSAGE), np.ones(MESSAGE)
    c.fold_input_scaling(model.f_r[0], np.tile(mean, 2), np.tile(std, 2))
    c.fold_input_scaling(model.f_o[0], np.r_[mean, zeros], np.r_[std, ones])
    out_dir = Path(out_dir)
    path = export(model, x, out_dir / f"{NAME}.onnx")
    recv, _ = edges(N_PARTICLES)
    card = c.ModelCard(
        name=NAME,
        description=f"JEDI-net-style interaction network on {N_PARTICLES} constituents, fully "
        f"connected ({len(recv)} edges): f_R 6->{HIDDEN}->{MESSAGE}, sum per receiver, "
        f"f_O 7->{HIDDEN}->{NODE_OUT}, sum over constituents, phi_O {NODE_OUT}->5 logits",
        task="classification",
        inputs={INPUT: ["N", N_PARTICLES, N_FEATURES]},
        outputs={OUTPUT: ["N", len(CLASSES)]},
        metrics=evaluate(path, test_s),
        training={
            **c.constituent_training(
                sample, train_s, test_s, epochs, seed, history, "Adam lr=5e-3 cosine, batch 256"
            ),
            "standardisation": "per-feature, folded into f_R's and f_O's first layers",
        },
        extra={
            "class_names": list(CLASSES),
            "features": ["pt/jet_pt", "eta-jet_eta", "dphi"],
            "graph": "fixed, fully connected; receivers/senders are constants in the ONNX",
        },
    )
    card.save(out_dir / f"{NAME}.json")
    return card
