"""Turn a float ``nn.Sequential`` into a QAT model, and a minimal training loop.

``convert`` keeps the float weights (so QAT starts from a trained model) and
picks integer bits from the data: weights from their largest magnitude, the
input and activations from a calibration batch. BatchNorm directly after a
Linear/Conv is fused into it (``batchnorm=True``) so it folds at export.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from lightspeed.errors import ConfigError, UnsupportedOpError
from lightspeed.fixed import FixedType
from lightspeed.nn.layers import (
    QBatchNorm,
    QClip,
    QConv1d,
    QConv2d,
    QInput,
    QLeakyReLU,
    QLinear,
    QReLU,
)
from lightspeed.nn.quantizer import Quantizer
from lightspeed.ops.base import param_type

_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)
_KEEP = (nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.Dropout, nn.Identity)
_MAC = (nn.Linear, nn.Conv1d, nn.Conv2d)


def weight_type(
    values: np.ndarray, bits: int, rounding: str = "RND", overflow: str = "SAT"
) -> FixedType:
    """``bits``-wide signed type whose integer part just holds max |values|."""
    t = param_type(np.asarray(values, dtype=np.float64), bits, signed=True)
    return FixedType(t.width, t.integer, True, rounding, overflow)


def activation_type(
    lo: float, hi: float, bits: int, rounding: str = "RND", overflow: str = "SAT"
) -> FixedType:
    """``bits``-wide type covering the calibrated range [lo, hi] (unsigned when lo >= 0)."""
    signed = lo < 0
    mag = max(abs(lo), abs(hi))
    ibits = (int(np.floor(np.log2(mag))) + 1 if mag > 0 else 0) + (1 if signed else 0)
    return FixedType(bits, ibits, signed, rounding, overflow)


def _ranges(model: nn.Sequential, x: torch.Tensor, quantile: float) -> list[tuple[float, float]]:
    """Range of the input and of every module's output, in order: the sign from the minimum,
    the magnitude from the ``quantile`` of |x| (outliers saturate instead of costing resolution)."""

    def rng(t: torch.Tensor) -> tuple[float, float]:
        a = t.detach().double().flatten()
        mag = (
            float(torch.quantile(a.abs()[: 1 << 20], quantile))
            if quantile < 1
            else float(a.abs().max())
        )
        lo = float(a.min())
        return (-mag if lo < 0 else 0.0, mag)

    out = [rng(x)]
    with torch.no_grad():
        for m in model:
            x = m(x)
            out.append(rng(x))
    return out


def convert(
    model: nn.Sequential,
    calibration: np.ndarray,
    weight_bits: int = 8,
    act_bits: int = 8,
    input_bits: int | None = None,
    bias_bits: int | None = None,
    output_bits: int | None = None,
    rounding: str = "RND",
    overflow: str = "SAT",
    range_quantile: float = 0.999,
) -> nn.Sequential:
    """A QAT copy of a float ``nn.Sequential`` with the given uniform widths.

    ``input_bits`` defaults to ``act_bits``; biases get ``bias_bits`` (default
    the weight's fractional bits plus the bias's own integer bits); the last
    layer's output stays exact unless ``output_bits`` is given. Integer bits of
    the input and activations cover the ``range_quantile`` of the calibration
    data's magnitudes (default 0.999: rarer outliers saturate rather than cost
    every value resolution; 1.0 covers the maximum).
    """
    if not isinstance(model, nn.Sequential):
        raise UnsupportedOpError(
            "convert() takes an nn.Sequential; build other models from lightspeed.nn layers"
        )
    mods: list[Any] = list(model.eval())
    x = torch.as_tensor(np.asarray(calibration), dtype=torch.float32)
    ranges = _ranges(model, x, range_quantile)
    in_t = activation_type(*ranges[0], input_bits or act_bits, rounding, overflow)
    layers: list[nn.Module] = [QInput(in_t)]
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, _MAC):
            bn = nxt if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)) else None
            after = i + (2 if bn is not None else 1)
            has_act = after < len(mods) and isinstance(mods[after], _ACTS)
            out_t = None
            if not has_act and output_bits is not None:
                out_t = activation_type(*ranges[after], output_bits, rounding, overflow)
            layers.append(_mac(m, bn, weight_bits, bias_bits, out_t, rounding, overflow))
            i = after
            continue
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layers.append(_batchnorm(m, weight_bits, act_bits, rounding, overflow))
        elif isinstance(m, _ACTS):
            layers.append(_act(m, activation_type(*ranges[i + 1], act_bits, rounding, overflow)))
        elif isinstance(m, _KEEP):
            layers.append(m)
        else:
            raise UnsupportedOpError(
                f"layer {i} ({type(m).__name__}) has no exact fixed-point QAT equivalent; supported: "
                "Linear, Conv1d/2d, BatchNorm, ReLU, ReLU6, Hardtanh, LeakyReLU, Flatten, MaxPool, Dropout"
            )
        i += 1
    return nn.Sequential(*layers)


def _bias_type(
    b: np.ndarray, w_t: FixedType, bias_bits: int | None, rounding: str, overflow: str
) -> FixedType:
    if bias_bits is not None:
        return weight_type(b, bias_bits, rounding, overflow)
    integer = param_type(b, 16, signed=True).integer
    frac = max(w_t.frac, 1)
    return FixedType(max(integer + frac, 2), integer, True, rounding, overflow)


def _mac(m: Any, bn: Any, weight_bits: int, bias_bits: int | None,
         out_t: FixedType | None, rounding: str, overflow: str) -> nn.Module:  # fmt: skip
    w = m.weight.detach().double()
    b = (
        m.bias.detach().double()
        if m.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64)
    )
    if bn is not None:  # types from the folded values, which is what gets quantized
        s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * s.reshape(-1, *([1] * (w.dim() - 1)))
        b = bn.bias.detach().double() + (b - bn.running_mean.double()) * s
    w_t = weight_type(w.numpy(), weight_bits, rounding, overflow)
    b_t = _bias_type(b.numpy(), w_t, bias_bits, rounding, overflow)
    kw: dict[str, Any] = {
        "weight": w_t,
        "bias_type": b_t,
        "output": out_t,
        "batchnorm": bn is not None,
    }
    if isinstance(m, nn.Linear):
        q: Any = QLinear(m.in_features, m.out_features, m.bias is not None, **kw)
    else:
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise UnsupportedOpError(f"{type(m).__name__}: only integer zero padding is supported")
        cls = QConv1d if isinstance(m, nn.Conv1d) else QConv2d
        q = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                m.bias is not None, **kw)  # fmt: skip
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
        if bn is not None:
            q.bn.load_state_dict(bn.state_dict())
    return q


def _batchnorm(m: Any, weight_bits: int, act_bits: int, rounding: str, overflow: str) -> QBatchNorm:
    s = (m.weight.detach().double() / torch.sqrt(m.running_var.double() + m.eps)).numpy()
    t = m.bias.detach().double().numpy() - m.running_mean.double().numpy() * s
    w_t = weight_type(s, weight_bits, rounding, overflow)
    q = QBatchNorm(m.num_features, weight=w_t, bias_type=_bias_type(t, w_t, None, rounding, overflow),
                   eps=m.eps, momentum=m.momentum, dims=2 if isinstance(m, nn.BatchNorm2d) else 1)  # fmt: skip
    q.bn.load_state_dict(m.state_dict())
    return q


def _act(m: Any, t: FixedType) -> nn.Module:
    if isinstance(m, nn.ReLU):
        return QReLU(t)
    if isinstance(m, nn.LeakyReLU):
        return QLeakyReLU(m.negative_slope, output=t)
    lo, hi = (0.0, 6.0) if isinstance(m, nn.ReLU6) else (m.min_val, m.max_val)
    return QClip(lo, hi, t)


def fit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    weight_decay: float = 0.0,
    schedule: str = "step",
    prune: Any = None,
) -> list[float]:
    """Adam with a cosine schedule over shuffled mini-batches; cross-entropy by default.

    ``schedule`` anneals the learning rate per optimizer ``"step"`` or per
    ``"epoch"`` (the zoo recipes). ``prune``: a :class:`lightspeed.nn.prune.PruningSchedule`
    applied at the start of every epoch. Returns the mean loss per epoch and leaves
    the model in eval mode.
    """
    if epochs < 0 or batch_size <= 0:
        raise ConfigError("fit: epochs must be >= 0 and batch_size > 0")
    if schedule not in ("step", "epoch"):
        raise ConfigError(f"fit: schedule must be 'step' or 'epoch', not {schedule!r}")
    loss_fn = loss or nn.CrossEntropyLoss()
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    per_step = schedule == "step"
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size) if per_step else epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        if prune is not None:
            prune.step(model, epoch)
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            out = loss_fn(model(xt[idx]), yt[idx])
            out.backward()
            opt.step()
            if per_step:
                sched.step()
            total += out.item() * len(idx)
        if not per_step:
            sched.step()
        history.append(total / max(len(xt), 1))
    model.eval()
    return history


__all__ = ["Quantizer", "activation_type", "convert", "fit", "from_graph", "weight_type"]


def from_graph(graph: Any) -> nn.Sequential:
    """A float torch ``nn.Sequential`` from a chain-shaped float IR graph (dense/conv/relu/...).

    Used to fine-tune an imported ONNX model with QAT (``lightspeed compile --precision search``).
    """
    layers: list[nn.Module] = []
    prev = next(iter(graph.inputs))
    for node in graph.nodes:
        if node.inputs[:1] != [prev] or len(node.inputs) != 1:
            raise UnsupportedOpError(
                f"node {node.name!r}: the precision search handles chain-shaped models (each layer "
                "feeding the next); build branching models from lightspeed.nn layers"
            )
        layers.append(_torch_layer(node))
        prev = node.outputs[0]
    return nn.Sequential(*layers)


def _torch_layer(node: Any) -> Any:
    p = node.params
    if node.op == "dense":
        w = np.asarray(p["weight"], dtype=np.float32)
        m: Any = nn.Linear(w.shape[0], w.shape[1], bias="bias" in p)
        with torch.no_grad():
            m.weight.copy_(torch.as_tensor(w.T))
            if "bias" in p:
                m.bias.copy_(torch.as_tensor(np.asarray(p["bias"], dtype=np.float32)))
        return m
    if node.op == "conv":
        w = np.asarray(p["weight"], dtype=np.float32)
        nd = w.ndim - 2
        pads = list(node.attrs.get("pads", [0] * 2 * nd))
        if pads[:nd] != pads[nd:]:
            raise UnsupportedOpError(
                f"node {node.name!r}: asymmetric padding {pads} is not supported"
            )
        cls = nn.Conv1d if nd == 1 else nn.Conv2d
        g = int(node.attrs.get("group", 1))
        m = cls(w.shape[1] * g, w.shape[0], tuple(w.shape[2:]), tuple(node.attrs.get("strides", [1] * nd)),
                tuple(pads[:nd]), tuple(node.attrs.get("dilations", [1] * nd)), g, "bias" in p)  # fmt: skip
        with torch.no_grad():
            m.weight.copy_(torch.as_tensor(w))
            if "bias" in p:
                m.bias.copy_(torch.as_tensor(np.asarray(p["bias"], dtype=np.float32)))
        return m
    if node.op == "relu":
        return nn.ReLU()
    if node.op == "leaky_relu":
        return nn.LeakyReLU(float(node.attrs.get("alpha", 0.01)))
    if node.op == "clip":
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
        if lo == 0 and hi == 6:
            return nn.ReLU6()
        return nn.Hardtanh(float(lo), float(hi))
    if node.op == "flatten":
        return nn.Flatten()
    raise UnsupportedOpError(
        f"node {node.name!r} ({node.op}): the precision search supports dense, conv, relu, leaky_relu, "
        "clip and flatten layers"
    )
