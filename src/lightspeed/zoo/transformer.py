"""Recipe: a small constituent transformer jet tagger on the 16 leading constituents.

Input ``constituents`` of shape (N, 16, 6), particles first (one token per
constituent): the six DeepSets features of :func:`lightspeed.zoo.deepsets.inputs`
(x = pT / jet pT, d-eta, d-phi, ln x, Delta R, a 1/0 "real particle" flag),
zero in empty slots. A per-feature standardisation is folded into the
embedding. The network: a Linear 6 -> 8 embedding, one post-norm encoder block
(2-head self-attention with d = 8, head size 4: a fused q/k/v Linear,
``softmax(q k^T / 2) v`` per head, an output Linear; residual + LayerNorm; an
MLP 8 -> 16 -> 8 with ReLU; residual + LayerNorm), the mean over the 16
tokens and a Linear 8 -> 5 giving logits (g, q, W, Z, t). No masks: empty
slots are all-zero tokens, seen the same way in training. It exports to plain
MatMul/Softmax/Transpose/Reshape/LayerNormalization-form ONNX, which lightspeed
imports as dense, matmul, softmax and layernorm ops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data.io import JetSample
from lightspeed.data.schema import CLASSES
from lightspeed.errors import InputError
from lightspeed.zoo import _common as c

NAME = "transformer"
INPUT, OUTPUT = "constituents", "logits"
N_PARTICLES = 16
N_FEATURES = 6
DIM, HEADS, HIDDEN = 8, 2, 16


def build() -> Any:
    torch = c.torch_module()
    nn = torch.nn

    class Tagger(nn.Module):  # type: ignore[name-defined]  # torch is an optional extra
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(N_FEATURES, DIM)
            self.qkv = nn.Linear(DIM, 3 * DIM)
            self.proj = nn.Linear(DIM, DIM)
            self.norm1 = nn.LayerNorm(DIM)
            self.mlp = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, DIM))
            self.norm2 = nn.LayerNorm(DIM)
            self.head = nn.Linear(DIM, len(CLASSES))

        def forward(self, x: Any) -> Any:
            hd = DIM // HEADS
            h = self.embed(x)
            q, k, v = (
                t.reshape(-1, N_PARTICLES, HEADS, hd).transpose(1, 2)
                for t in self.qkv(h).chunk(3, dim=-1)
            )
            a = torch.softmax((q @ k.transpose(-2, -1)) * hd**-0.5, dim=-1)
            att = (a @ v).transpose(1, 2).reshape(-1, N_PARTICLES, DIM)
            h = self.norm1(h + self.proj(att))
            h = self.norm2(h + self.mlp(h))
            return self.head(h.mean(dim=1))

    return Tagger()


def inputs(sample: JetSample) -> np.ndarray:
    """(n, 16, 6) float32: the DeepSets features of the 16 leading constituents, per particle."""
    from lightspeed.zoo.deepsets import inputs as deepsets_inputs

    try:
        x = deepsets_inputs(sample)
    except InputError:
        raise InputError(
            "the transformer tagger needs constituents: make a file with "
            "`lightspeed data jets --n N -o FILE --constituents 30`"
        ) from None
    return np.ascontiguousarray(x[:, :, :N_PARTICLES].transpose(0, 2, 1))


def evaluate(
    onnx_path: Path, sample: JetSample, predict: c.Predict | None = None
) -> dict[str, float]:
    return c.classifier_accuracy(onnx_path, inputs(sample), sample.labels, predict)


def train(
    out_dir: Path, sample: JetSample | None = None, epochs: int = 100, seed: int = 0
) -> c.ModelCard:
    sample = c.require_constituents("transformer", sample, 5000)
    torch = c.seed_everything(seed)
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    x = inputs(train_s)
    mean, std = x.mean(axis=(0, 1)), np.maximum(x.std(axis=(0, 1)), 1e-6)
    model = build()
    history = c.train_loop(
        model,
        torch.nn.CrossEntropyLoss(),
        ((x - mean) / std).astype(np.float32),
        train_s.labels.astype(np.int64),
        epochs=epochs,
        seed=seed,
        lr=3e-3,
    )
    c.fold_input_scaling(model.embed, mean, std)
    out_dir = Path(out_dir)
    path = c.export_onnx(model, x, out_dir / f"{NAME}.onnx", INPUT, OUTPUT)
    card = c.ModelCard(
        name=NAME,
        description="constituent transformer: Linear 6->8 embedding, one post-norm encoder "
        "block (2-head self-attention, LayerNorm, MLP 8->16->8, LayerNorm) over 16 "
        "particles, mean over particles, Linear 8->5 logits (no Softmax)",
        task="classification",
        inputs={INPUT: ["N", N_PARTICLES, N_FEATURES]},
        outputs={OUTPUT: ["N", len(CLASSES)]},
        metrics=evaluate(path, test_s),
        training={
            **c.constituent_training(
                sample, train_s, test_s, epochs, seed, history, "Adam lr=3e-3 cosine, batch 256"
            ),
            "standardisation": "per-feature, folded into the embedding; the model takes "
            "inputs() directly",
        },
        extra={
            "class_names": list(CLASSES),
            "features": ["pt/jet_pt", "eta-jet_eta", "dphi", "ln(pt/jet_pt)", "dR", "real"],
        },
    )
    card.save(out_dir / f"{NAME}.json")
    return card
