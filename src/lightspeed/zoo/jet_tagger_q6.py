"""Recipe: the jet tagger for a Level-1 trigger - 6-bit QAT weights, 70% of them pruned.

The architecture of the float tagger (16 -> 64 -> 32 -> 32 -> 5, ReLU) trained with
lightspeed's QAT layers: weights ``ap_fixed<6,1>`` (the QKeras tagger's type), ReLU
outputs ``ap_ufixed<6,2>``, and magnitude pruning ramped to 70% of every layer's
weights. The raw features are standardised inside the model by a fixed-point
per-feature scale and shift (a ``QBatchNorm`` holding the training set's mean and
standard deviation, 10-bit scales), so the model takes the raw 16 features like the
float tagger. It ships as a QONNX file with its trained types: compile it with
``precision="trained"`` (no calibration), and the emulator and the firmware give
the QAT model's own answers bit for bit.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.data.io import JetSample, load_default_jets
from lightspeed.data.schema import CLASSES, FEATURES
from lightspeed.zoo import _common as c
from lightspeed.zoo import jet_tagger as float_recipe

NAME = "jet_tagger_q6"
PRECISION = "trained"  # the shipped file carries its trained types
INPUT_TYPE = "ap_fixed<20,10,RND,SAT>"  # raw features: up to ~540 (jet mass), lsb 2**-10
WEIGHT = "ap_fixed<6,1,RND,SAT>"
ACTIVATION = "ap_ufixed<6,2,RND,SAT>"
SPARSITY = 0.7
HIDDEN = float_recipe.HIDDEN

inputs = float_recipe.inputs


def build(mean: np.ndarray, std: np.ndarray) -> Any:
    torch = c.torch_module()
    from lightspeed import nn as lnn

    # integer bits per feature of the 1/std scale (10 bits each)
    ints = [max(1, math.ceil(math.log2(1.0 / s)) + 1) for s in std]
    layers: list[Any] = [
        lnn.QInput(INPUT_TYPE),
        lnn.QBatchNorm1d(
            len(FEATURES),
            weight=lnn.Quantizer(width=[10] * len(FEATURES), integer=ints),
            bias_type="ap_fixed<12,5,RND,SAT>",
            output="ap_fixed<10,4,RND,SAT>",
        ),
    ]
    sizes = (len(FEATURES), *HIDDEN)
    for a, b in itertools.pairwise(sizes):
        layers += [lnn.QLinear(a, b, weight=WEIGHT), lnn.QReLU(ACTIVATION)]
    layers.append(lnn.QLinear(sizes[-1], len(CLASSES), weight=WEIGHT))
    model = torch.nn.Sequential(*layers)
    bn = model[1].bn
    with torch.no_grad():  # start from the training set's statistics
        bn.running_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        bn.running_var.copy_(torch.as_tensor(std**2, dtype=torch.float32))
    return model


def name_io(path: Path, inp: str = "features", out: str = "logits") -> Path:
    """Give the exported file the float tagger's tensor names and batch dimension 'N'."""
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    rename = {g.input[0].name: inp, g.output[0].name: out}
    for n in g.node:
        n.input[:] = [rename.get(t, t) for t in n.input]
        n.output[:] = [rename.get(t, t) for t in n.output]
    for v in (*g.input, *g.output, *g.value_info):
        v.name = rename.get(v.name, v.name)
        dims = v.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = c.BATCH_DIM
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def evaluate(path: Path, sample: JetSample, predict: c.Predict | None = None) -> dict[str, float]:
    """Accuracy (and per-class AUC) of the compiled model at its trained precision."""
    if predict is None:
        from lightspeed.frontends import load_model
        from lightspeed.quantize import quantize

        predict = quantize(load_model(str(path)), precision=PRECISION).predict
    return float_recipe.evaluate(path, sample, predict)


def train(
    out_dir: Path, sample: JetSample | None = None, epochs: int = 30, seed: int = 0
) -> c.ModelCard:
    torch = c.seed_everything(seed)
    from lightspeed import nn as lnn
    from lightspeed.frontends.qonnx_export import export_qonnx

    sample = sample if sample is not None else load_default_jets()
    train_s, test_s = sample.split(c.TEST_FRACTION, c.SPLIT_SEED)
    x = inputs(train_s)
    mean, std = c.fit_scaler(x)
    model = build(mean, std)
    schedule = lnn.PruningSchedule(target=SPARSITY, begin=2, end=max(3, int(epochs * 0.6)))
    history = lnn.fit(
        model, x, train_s.labels.astype(np.int64), epochs=epochs, lr=3e-3, seed=seed,
        schedule="epoch", prune=schedule,
    )  # fmt: skip
    q = lnn.to_quantized(model.eval(), (len(FEATURES),), name=NAME)
    with torch.no_grad():  # the exported model answers exactly like the QAT model
        probe = torch.as_tensor(inputs(test_s)[:2000], dtype=torch.float64)
        assert np.array_equal(q.predict(probe.numpy()), model.double()(probe).numpy())
    path = name_io(export_qonnx(q, Path(out_dir) / f"{NAME}.onnx"))
    metrics = evaluate(path, test_s, q.predict)
    card = c.ModelCard(
        name=NAME,
        description=(
            "16 -> 64 -> 32 -> 32 -> 5 jet tagger, QAT with 6-bit weights and 70% magnitude "
            "pruning; raw features standardised inside the model; QONNX with trained types"
        ),
        task="classification",
        inputs={"features": ["N", len(FEATURES)]},
        outputs={"logits": ["N", len(CLASSES)]},
        metrics=metrics,
        metrics_fixed=metrics,  # the trained fixed-point model is the model
        training={
            "data": sample.meta.get("generator", "custom sample"),
            "n_train": len(train_s),
            "n_test": len(test_s),
            "split": {"test_fraction": c.TEST_FRACTION, "seed": c.SPLIT_SEED},
            "epochs": epochs,
            "optimizer": "Adam lr=3e-3 cosine per epoch, batch 256",
            "pruning": f"magnitude, cubic ramp to {SPARSITY:.0%} per layer (epochs 2..)",
            "types": {"input": INPUT_TYPE, "weights": WEIGHT, "relu": ACTIVATION},
            "sparsity": lnn.sparsity_of(model),
            "seed": seed,
            "final_loss": history[-1],
            "precision": PRECISION,
        },
        extra={"feature_names": list(FEATURES), "class_names": list(CLASSES)},
    )
    card.save(Path(out_dir) / f"{NAME}.json")
    return card
