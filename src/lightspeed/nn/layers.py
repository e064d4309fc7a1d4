"""Quantization-aware layers whose eval-mode forward is the IR's fixed-point contract.

A multiply-accumulate layer (``QLinear``, ``QConv1d``, ``QConv2d``,
``QBatchNorm*``) computes, in eval mode::

    y = output_quant( x @ weight_quant(W) + bias_quant(b) )

in float64. ``x`` is already a fixed-point value (it comes from a ``QInput`` or
from a quantized layer), the quantized weights and biases are exact, and the
accumulator exported with the layer is sized by interval analysis so that
nothing is ever lost: every product and partial sum is an integer multiple of
the accumulator's step below 2**53, so float64 sums them exactly in any order.
That is the emulator's ``acc = (accum_t) bias; acc += (accum_t)(x*w); y =
(result_t) acc`` with an exact ``accum_t``. Without ``output`` the result
type is the accumulator itself (the activation that follows quantizes).

Training runs in the input's dtype (float32) with straight-through gradients.
``batchnorm=True`` fuses a BatchNorm after the layer: in training it folds the
batch statistics into the weights before quantizing them (as QKeras'
``QDenseBatchnorm``), in eval the running statistics, so the exported folded
weights are exactly those the eval forward used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightspeed.errors import ConfigError
from lightspeed.fixed import FixedType
from lightspeed.nn.quantizer import Quantizer, TypeLike, as_quantizer

QuantLike = Quantizer | TypeLike | None


def _dtype(module: nn.Module, x: torch.Tensor) -> torch.dtype:
    """Training keeps the input dtype; eval computes in float64, where the contract is exact."""
    return x.dtype if module.training else torch.float64


def _default_bias(weight_q: Quantizer) -> Quantizer:
    """Bias type: the weight's step with 6 integer bits (biases are larger than weights)."""
    t = weight_q.fixed_type
    frac = max(t.frac, 0)
    return Quantizer(width=frac + 6, integer=6, rounding=t.rounding, overflow=t.overflow)


def _bn_fold(
    bn: Any, y: torch.Tensor | None, training: bool, dt: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of ``bn``: batch statistics of ``y`` in training (updating the
    running statistics), running statistics in eval."""
    if training:
        assert y is not None
        dims = [d for d in range(y.dim()) if d != 1]
        mean = y.mean(dim=dims)
        var = y.var(dim=dims, unbiased=False)
        with torch.no_grad():  # same running-stat update as nn.BatchNorm
            n = y.numel() / y.shape[1]
            m = bn.momentum if bn.momentum is not None else 0.1
            bn.running_mean.mul_(1 - m).add_(m * mean.detach().to(bn.running_mean.dtype))
            unbiased = var.detach() * (n / max(n - 1, 1))
            bn.running_var.mul_(1 - m).add_(m * unbiased.to(bn.running_var.dtype))
            bn.num_batches_tracked += 1
    else:
        mean, var = bn.running_mean.to(dt), bn.running_var.to(dt)
    gamma = bn.weight.to(dt) if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.to(dt) if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var.to(dt) + bn.eps)
    return scale, beta - mean.to(dt) * scale


class QMacLayer(nn.Module):
    """Shared parts of the multiply-accumulate layers."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    bn: nn.modules.batchnorm._BatchNorm | None

    def _setup_quant(
        self, weight: QuantLike, bias: QuantLike, output: QuantLike, has_bias: bool
    ) -> None:
        wq = as_quantizer(weight, f"{type(self).__name__} weight")
        if wq is None:
            raise ConfigError(
                f"{type(self).__name__}: weight needs a type, e.g. weight='ap_fixed<8,1>'"
            )
        self.weight_quant = wq
        bq = as_quantizer(bias, f"{type(self).__name__} bias")
        if bq is None and (has_bias or self.bn is not None):
            bq = _default_bias(wq)
        self.bias_quant = bq
        self.output_quant = as_quantizer(output, f"{type(self).__name__} output")

    def _linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _float_params(self, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.weight.to(dt)
        mask = getattr(self, "weight_mask", None)  # lightspeed.nn.prune: pruned weights are 0
        if mask is not None:
            w = w * mask.to(dt)
        return w, None if self.bias is None else self.bias.to(dt)

    def _folded(
        self, x: torch.Tensor | None, dt: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self._float_params(dt)
        if self.bn is None:
            return w, b
        y0 = self._linear(x, w, b) if self.training and x is not None else None
        scale, shift = _bn_fold(self.bn, y0, self.training, dt)
        wf = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
        bf = shift if b is None else shift + b * scale
        return wf, bf

    def quantized_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eval-mode (folded) quantized weight and bias in float64: exactly what eval uses."""
        if self.training:
            raise ConfigError(
                "call model.eval() before exporting: quantized params use running stats"
            )
        with torch.no_grad():
            w, b = self._folded(None, torch.float64)
            wq = self.weight_quant(w)
            bq = None if b is None or self.bias_quant is None else self.bias_quant(b)
        return wq, bq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = _dtype(self, x)
        x = x.to(dt)
        w, b = self._folded(x, dt)
        wq = self.weight_quant(w)
        bq = None if b is None or self.bias_quant is None else self.bias_quant(b)
        y = self._linear(x, wq, bq)
        return self.output_quant(y) if self.output_quant is not None else y


class QLinear(QMacLayer):
    """``nn.Linear`` with fixed-point weight, bias and (optionally) output types.

    ``QLinear(16, 64, weight="ap_fixed<6,1>", output=None, batchnorm=False)``;
    ``weight``/``bias`` may be per-channel ``Quantizer(width=[...], integer=[...])``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight: QuantLike = "ap_fixed<8,1,RND,SAT>",
        bias_type: QuantLike = None,
        output: QuantLike = None,
        batchnorm: bool = False,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features) if in_features else 0.0
            nn.init.uniform_(self.bias, -bound, bound)
        self.bn = (
            nn.BatchNorm1d(out_features, eps=bn_eps, momentum=bn_momentum) if batchnorm else None
        )
        self._setup_quant(weight, bias_type, output, bias)

    def _linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)


class QConvNd(QMacLayer):
    nd = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        weight: QuantLike = "ap_fixed<8,1,RND,SAT>",
        bias_type: QuantLike = None,
        output: QuantLike = None,
        batchnorm: bool = False,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(padding, str):
            raise ConfigError(
                f"{type(self).__name__}: give padding as integers (string padding {padding!r} is not supported)"
            )
        if in_channels % groups or out_channels % groups:
            raise ConfigError(
                f"{type(self).__name__}: channels {in_channels}->{out_channels} not divisible by groups {groups}"
            )
        tup = lambda v: tuple(v) if isinstance(v, Sequence) else (int(v),) * self.nd  # noqa: E731
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = tup(kernel_size), tup(stride)
        self.padding, self.dilation, self.groups = tup(padding), tup(dilation), groups
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = (in_channels // groups) * int(np.prod(self.kernel_size))
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        bn_cls = nn.BatchNorm1d if self.nd == 1 else nn.BatchNorm2d
        self.bn = bn_cls(out_channels, eps=bn_eps, momentum=bn_momentum) if batchnorm else None
        self._setup_quant(weight, bias_type, output, bias)

    def _linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        conv = F.conv1d if self.nd == 1 else F.conv2d
        return conv(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def onnx_attrs(self) -> dict[str, Any]:
        return {
            "strides": list(self.stride),
            "pads": list(self.padding) * 2,
            "dilations": list(self.dilation),
            "group": self.groups,
        }


class QConv1d(QConvNd):
    """``nn.Conv1d`` (channels-first, zero padding) with fixed-point types; see :class:`QLinear`."""

    nd = 1


class QConv2d(QConvNd):
    """``nn.Conv2d`` (channels-first, zero padding) with fixed-point types; see :class:`QLinear`."""

    nd = 2


class QBatchNorm(nn.Module):
    """A BatchNorm that is not folded: ``y = x * scale + shift`` per channel in fixed point.

    ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale`` are
    quantized to ``weight``/``bias`` types (the IR's ``batchnorm`` op). To fold
    a BatchNorm into the preceding layer use ``QLinear(..., batchnorm=True)``.
    """

    def __init__(
        self,
        num_features: int,
        *,
        weight: QuantLike = "ap_fixed<12,4,RND,SAT>",
        bias_type: QuantLike = "ap_fixed<12,4,RND,SAT>",
        output: QuantLike = None,
        eps: float = 1e-5,
        momentum: float = 0.1,
        dims: int = 1,
    ) -> None:
        super().__init__()
        self.bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(
            num_features, eps=eps, momentum=momentum
        )
        wq = as_quantizer(weight, "QBatchNorm weight")
        bq = as_quantizer(bias_type, "QBatchNorm bias")
        if wq is None or bq is None:
            raise ConfigError("QBatchNorm needs weight and bias_type types")
        self.weight_quant: Quantizer = wq
        self.bias_quant: Quantizer = bq
        self.output_quant = as_quantizer(output, "QBatchNorm output")

    def _scale_shift(
        self, x: torch.Tensor | None, dt: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = _bn_fold(self.bn, x, self.training, dt)
        return self.weight_quant(scale), self.bias_quant(shift)

    def quantized_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            raise ConfigError(
                "call model.eval() before exporting: quantized params use running stats"
            )
        with torch.no_grad():
            return self._scale_shift(None, torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = _dtype(self, x)
        x = x.to(dt)
        s, t = self._scale_shift(x, dt)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        y = x * s.reshape(shape) + t.reshape(shape)
        return self.output_quant(y) if self.output_quant is not None else y


def QBatchNorm1d(num_features: int, **kw: Any) -> QBatchNorm:
    """QBatchNorm over (B, C) or (B, C, L)."""
    return QBatchNorm(num_features, dims=1, **kw)


def QBatchNorm2d(num_features: int, **kw: Any) -> QBatchNorm:
    """QBatchNorm over (B, C, H, W)."""
    return QBatchNorm(num_features, dims=2, **kw)


class QInput(nn.Module):
    """Cast to a fixed-point type: the model's input type when first, else a ``quant`` node."""

    def __init__(self, type: QuantLike) -> None:
        super().__init__()
        q = as_quantizer(type, "QInput")
        if q is None:
            raise ConfigError("QInput needs a type, e.g. QInput('ap_fixed<16,6,RND,SAT>')")
        if q.per_channel:
            raise ConfigError(
                "activation types are per tensor (one type per IR tensor); give one width"
            )
        self.quant = q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(x.to(_dtype(self, x)))


class QActLayer(nn.Module):
    def __init__(self, output: QuantLike) -> None:
        super().__init__()
        q = as_quantizer(output, type(self).__name__)
        if q is not None and q.per_channel:
            raise ConfigError(
                "activation types are per tensor (one type per IR tensor); give one width"
            )
        self.output_quant = q

    def _q(self, y: torch.Tensor) -> torch.Tensor:
        return self.output_quant(y) if self.output_quant is not None else y


class QReLU(QActLayer):
    """ReLU followed by a cast to ``output`` (e.g. ``'ap_ufixed<6,2,RND,SAT>'``).

    Without ``output`` the result keeps the input's step (the non-negative half of its type).
    """

    def __init__(self, output: QuantLike = None) -> None:
        super().__init__(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._q(torch.relu(x.to(_dtype(self, x))))


class QClip(QActLayer):
    """Hard activation ``clamp(x, min, max)`` then a cast to ``output`` (ReLU6, HardTanh).

    The bounds must lie on the input's grid (integers always do for types with
    fractional bits); export refuses bounds the input type cannot represent.
    """

    def __init__(self, min: float | None, max: float | None, output: QuantLike = None) -> None:
        super().__init__(output)
        self.min, self.max = min, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._q(torch.clamp(x.to(_dtype(self, x)), self.min, self.max))

    def extra_repr(self) -> str:
        return f"min={self.min}, max={self.max}"


def QReLU6(output: QuantLike = None) -> QClip:
    """``clamp(x, 0, 6)`` cast to ``output``."""
    return QClip(0.0, 6.0, output)


def QHardTanh(output: QuantLike = None) -> QClip:
    """``clamp(x, -1, 1)`` cast to ``output``."""
    return QClip(-1.0, 1.0, output)


class QLeakyReLU(QActLayer):
    """``x if x > 0 else alpha_q * x``, both branches cast to ``output`` (required).

    ``alpha`` is quantized to ``param`` (default: 16 bits scaled to alpha).
    """

    def __init__(
        self, alpha: float = 0.01, param: QuantLike = None, output: QuantLike = None
    ) -> None:
        super().__init__(output)
        if self.output_quant is None:
            raise ConfigError(
                "QLeakyReLU needs an output type, e.g. output='ap_fixed<8,3,RND,SAT>'"
            )
        if param is None:
            from lightspeed.ops.base import param_type

            param = param_type(np.array([alpha]), 16)
        pq = as_quantizer(param, "QLeakyReLU param")
        assert pq is not None
        self.param_quant: Quantizer = pq
        self.alpha = float(alpha)

    def alpha_q(self) -> float:
        with torch.no_grad():
            return float(self.param_quant(torch.tensor([self.alpha], dtype=torch.float64))[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_dtype(self, x))
        a = self.param_quant(torch.tensor([self.alpha], dtype=x.dtype))
        return torch.where(x > 0, self._q(x), self._q(x * a))


def output_type(module: nn.Module) -> FixedType | None:
    q = getattr(module, "output_quant", None)
    return None if q is None else q.fixed_type
