"""Shared pieces of the training recipes: seeding, scaling folded into layers, ONNX export."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lightspeed.errors import InputError, require

S = TypeVar("S")

# A model as a function: batch of inputs -> batch of outputs (onnxruntime or the fixed-point emulator).
Predict = Callable[[np.ndarray], np.ndarray]

OPSET = 13
BATCH_DIM = "N"
TEST_FRACTION = 0.25
SPLIT_SEED = 0


@dataclass
class ModelCard:
    """What a shipped model is, how it was trained and how well it does (written next to the ONNX)."""

    name: str
    description: str
    task: str
    inputs: dict[str, list[Any]]
    outputs: dict[str, list[Any]]
    metrics: dict[str, float]
    training: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    # the same metrics for the bit-exact fixed-point emulation at auto precision
    metrics_fixed: dict[str, float] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls(**json.loads(path.read_text()))


def torch_module() -> Any:
    """Import torch or raise ToolMissingError with the install command."""
    return require("torch", "torch", "training the reference models (pip install torch==2.13.0)")


def seed_everything(seed: int) -> Any:
    torch = torch_module()
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # the box is shared; these nets are tiny
    return torch


def fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (std floored so constant columns do not blow up)."""
    mean = x.mean(axis=0).astype(np.float64)
    std = np.maximum(x.std(axis=0).astype(np.float64), 1e-6)
    return mean, std


def fold_input_scaling(layer: Any, mean: np.ndarray, std: np.ndarray) -> None:
    """Make a Linear/Conv ``layer`` act on raw x where it was trained on (x - mean) / std.

    W (x - m)/s + b = (W/s) x + (b - W m/s), so the exported model takes raw inputs.
    ``mean``/``std`` are per input feature (Linear) or per input channel (Conv).
    """
    torch = torch_module()
    with torch.no_grad():
        w = layer.weight.double()
        extra = (1,) * (w.dim() - 2)  # kernel dims of a convolution
        s = torch.as_tensor(std, dtype=torch.float64).reshape(1, -1, *extra)
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1, *extra)
        shift = (w * (m / s)).sum(dim=tuple(range(1, w.dim())))
        layer.bias.copy_((layer.bias.double() - shift).float())
        layer.weight.copy_((w / s).float())


def fold_output_scaling(linear: Any, mean: np.ndarray, std: np.ndarray) -> None:
    """Make ``linear`` output y = mean + std * y_trained, so the export predicts in physical units."""
    torch = torch_module()
    with torch.no_grad():
        s = torch.as_tensor(std, dtype=torch.float64)
        m = torch.as_tensor(mean, dtype=torch.float64)
        linear.weight.copy_((linear.weight.double() * s[:, None]).float())
        linear.bias.copy_((linear.bias.double() * s + m).float())


def export_onnx(
    model: Any,
    example: np.ndarray,
    path: Path,
    input_name: str,
    output_name: str,
    opset: int = OPSET,
) -> Path:
    """Export (opset 13 unless told) with a symbolic batch dimension 'N'; check it with onnx."""
    torch = torch_module()
    import warnings

    import onnx

    model.eval()
    x = torch.as_tensor(example[:2], dtype=torch.float32)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but gives plain Gemm/Conv graphs with a named batch dim
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(torch, model, x, path, input_name, output_name, opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    return path


def _export(
    torch: Any, model: Any, x: Any, path: Path, input_name: str, output_name: str, opset: int
) -> None:
    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: BATCH_DIM}, output_name: {0: BATCH_DIM}},
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output ONNX model with onnxruntime (float32)."""
    ort = require("onnxruntime", "serve", "running the zoo models")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def predictor(onnx_path: Path, predict: Predict | None = None) -> Predict:
    """``predict`` if given, else onnxruntime on ``onnx_path``."""
    if predict is not None:
        return predict
    return lambda x: run_onnx(onnx_path, x)


def train_loop(
    model: Any,
    loss_fn: Any,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
) -> list[float]:
    """Plain Adam + cosine schedule (per epoch) over shuffled mini-batches; loss per epoch."""
    from lightspeed.nn import fit

    return fit(
        model, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, loss=loss_fn,
        weight_decay=weight_decay, schedule="epoch",
    )  # fmt: skip


def roc_auc(score_bkg: np.ndarray, score_sig: np.ndarray) -> float:
    """Area under the ROC curve: P(score_sig > score_bkg), ties counted half (Mann-Whitney U)."""
    scores = np.concatenate([score_bkg, score_sig])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for f, c in zip(first, counts, strict=True):
        if c > 1:
            ranks[order[f : f + c]] = f + (c + 1) / 2.0
    r_sig = ranks[len(score_bkg) :].sum()
    n_s, n_b = len(score_sig), len(score_bkg)
    return float((r_sig - n_s * (n_s + 1) / 2.0) / (n_s * n_b))


def tolist(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a).ravel()]


def card_dict(card: ModelCard) -> dict[str, Any]:
    return asdict(card)


def classifier_accuracy(
    onnx_path: Path, x: np.ndarray, labels: np.ndarray, predict: Predict | None = None
) -> dict[str, float]:
    """Argmax accuracy of a classifier (the shipped file in onnxruntime, or ``predict``)."""
    logits = predictor(onnx_path, predict)(x)
    return {"accuracy": float(np.mean(logits.argmax(axis=1) == labels))}


def require_constituents(name: str, sample: S | None, n_jets: int) -> S:
    """Constituent taggers train on a generated sample: the shipped one has no constituents."""
    if sample is None:
        raise InputError(
            f"train('{name}') needs sample=JetSample with constituents (the shipped sample "
            f"has none): lightspeed data jets --n {n_jets} --constituents 30 -o FILE"
        )
    return sample


def constituent_training(
    sample: Any, train_s: Any, test_s: Any, epochs: int, seed: int, history: list, optimizer: str
) -> dict[str, Any]:
    """The model card's training facts shared by the taggers trained on a generated sample."""
    return {
        "data": "a generated sample with 30 constituents per jet (not shipped)",
        "data_config": sample.meta.get("config", {}),
        "n_train": len(train_s),
        "n_test": len(test_s),
        "split": {"test_fraction": TEST_FRACTION, "seed": SPLIT_SEED},
        "epochs": epochs,
        "optimizer": optimizer,
        "seed": seed,
        "final_loss": history[-1],
    }
