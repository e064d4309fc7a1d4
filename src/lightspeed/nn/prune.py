"""Magnitude pruning for the QAT layers: weights forced to exact zeros, which cost nothing.

A pruned weight is masked before quantization (``weight * mask``), so its quantized
value is exactly 0 in training, in the exported model and in the compiled integers;
the firmware drops zero weights from the multiply-accumulate, and
``lightspeed report`` shows each layer's share of zeros.

``PruningSchedule`` raises the sparsity gradually during training (the cubic
schedule of Zhu & Gupta, "To prune, or not to prune", 2017): from ``initial`` at
``begin`` to ``target`` at ``end`` (epochs), masks recomputed every ``every``
epochs. A weight once pruned stays pruned. ``scope="layer"`` gives every layer the
same sparsity; ``"global"`` ranks all layers' weights together (layers with many
small weights lose more).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lightspeed.errors import ConfigError
from lightspeed.nn.layers import QMacLayer


def mac_layers(model: nn.Module) -> list[tuple[str, QMacLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QMacLayer)]


def _mask(layer: QMacLayer) -> torch.Tensor:
    m = getattr(layer, "weight_mask", None)
    return torch.ones_like(layer.weight, dtype=torch.bool) if m is None else m


def _set_mask(layer: QMacLayer, mask: torch.Tensor) -> None:
    current = getattr(layer, "weight_mask", None)
    if current is None:
        layer.register_buffer("weight_mask", mask.clone())
    else:
        current.copy_(mask)
    with torch.no_grad():
        layer.weight.mul_(mask)  # pruned weights stay 0 even if the mask is dropped later


def prune(model: nn.Module, sparsity: float, scope: str = "layer") -> dict[str, float]:
    """Zero the smallest-magnitude weights until ``sparsity`` of them are pruned.

    Masks only grow: weights pruned before stay pruned. Returns the sparsity per layer.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), not {sparsity}")
    if scope not in ("layer", "global"):
        raise ConfigError(f"pruning scope must be 'layer' or 'global', not {scope!r}")
    layers = mac_layers(model)
    if not layers:
        raise ConfigError("the model has no QLinear/QConv layers to prune")
    with torch.no_grad():
        if scope == "global":
            scores = torch.cat([(m.weight.abs() * _mask(m)).flatten() for _, m in layers])
            k = round(sparsity * scores.numel())
            cut = torch.kthvalue(scores, k).values if k > 0 else None
            for _, m in layers:
                if cut is not None:
                    keep = (m.weight.abs() > cut) & _mask(m)
                    _set_mask(m, keep)
        else:
            for _, m in layers:
                w = m.weight.abs() * _mask(m)
                k = round(sparsity * w.numel())
                if k == 0:
                    continue
                cut = torch.kthvalue(w.flatten(), k).values
                _set_mask(m, (w > cut) & _mask(m))
    return sparsity_of(model)


def sparsity_of(model: nn.Module) -> dict[str, float]:
    """Fraction of pruned (masked) weights per QAT layer."""
    out = {}
    for name, m in mac_layers(model):
        mask = getattr(m, "weight_mask", None)
        out[name] = 0.0 if mask is None else 1.0 - float(mask.float().mean())
    return out


@dataclass(frozen=True)
class PruningSchedule:
    """Cubic sparsity ramp from ``initial`` (epoch ``begin``) to ``target`` (epoch ``end``)."""

    target: float
    begin: int = 0
    end: int = 10
    every: int = 1
    initial: float = 0.0
    scope: str = "layer"

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial <= self.target < 1.0:
            raise ConfigError("PruningSchedule needs 0 <= initial <= target < 1")
        if self.end < self.begin or self.every < 1:
            raise ConfigError("PruningSchedule needs begin <= end and every >= 1")

    def sparsity_at(self, epoch: int) -> float:
        if epoch < self.begin:
            return 0.0
        if epoch >= self.end:
            return self.target
        frac = (epoch - self.begin) / max(self.end - self.begin, 1)
        return self.target + (self.initial - self.target) * (1.0 - frac) ** 3

    def step(self, model: nn.Module, epoch: int) -> dict[str, float] | None:
        """Update the masks at the start of ``epoch`` when the schedule says so."""
        due = epoch >= self.end or (epoch >= self.begin and (epoch - self.begin) % self.every == 0)
        if not due:
            return None
        return prune(model, self.sparsity_at(epoch), self.scope)
