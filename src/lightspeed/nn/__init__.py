"""Quantization-aware training (QAT) for PyTorch with lightspeed's fixed-point semantics.

>>> from lightspeed import nn as lnn
>>> model = torch.nn.Sequential(
...     lnn.QInput("ap_fixed<10,4,RND,SAT>"),
...     lnn.QLinear(16, 64, weight="ap_fixed<6,1,RND,SAT>"), lnn.QReLU("ap_ufixed<6,3,RND,SAT>"),
...     lnn.QLinear(64, 5, weight="ap_fixed<6,1,RND,SAT>"))
>>> ...train as usual...
>>> q = lnn.to_quantized(model.eval(), input_shape=(16,))
>>> q.predict(x) == model(torch.as_tensor(x)).numpy()      # bit for bit

``convert(float_model, ...)`` turns a float ``nn.Sequential`` into a QAT model;
``fit`` is a minimal training loop used by the precision search. Needs torch
(``pip install 'lightspeed[torch]'``). See docs/qat.md.
"""

from __future__ import annotations

from lightspeed.errors import require

require("torch", "torch", "quantization-aware training (lightspeed.nn)")

from lightspeed.nn.convert import convert, fit, from_graph  # noqa: E402
from lightspeed.nn.export import export, quantized_from_graph, to_graph, to_quantized  # noqa: E402
from lightspeed.nn.layers import (  # noqa: E402
    QActLayer,
    QBatchNorm,
    QBatchNorm1d,
    QBatchNorm2d,
    QClip,
    QConv1d,
    QConv2d,
    QHardTanh,
    QInput,
    QLeakyReLU,
    QLinear,
    QMacLayer,
    QReLU,
    QReLU6,
)
from lightspeed.nn.prune import PruningSchedule, prune, sparsity_of  # noqa: E402
from lightspeed.nn.quantizer import Quantizer, fake_quant  # noqa: E402

__all__ = [
    "PruningSchedule",
    "QActLayer",
    "QBatchNorm",
    "QBatchNorm1d",
    "QBatchNorm2d",
    "QClip",
    "QConv1d",
    "QConv2d",
    "QHardTanh",
    "QInput",
    "QLeakyReLU",
    "QLinear",
    "QMacLayer",
    "QReLU",
    "QReLU6",
    "Quantizer",
    "convert",
    "export",
    "fake_quant",
    "fit",
    "from_graph",
    "prune",
    "quantized_from_graph",
    "sparsity_of",
    "to_graph",
    "to_quantized",
]
