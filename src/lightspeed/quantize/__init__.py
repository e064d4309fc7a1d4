"""Quantization: precision config, calibration (PTQ), automatic types, the quantized model."""

from lightspeed.ops.base import AutoOptions
from lightspeed.quantize.config import PrecisionConfig, make_config
from lightspeed.quantize.model import QuantizedModel
from lightspeed.quantize.ptq import calibration_ranges, quantize

__all__ = [
    "AutoOptions",
    "PrecisionConfig",
    "QuantizedModel",
    "calibration_ranges",
    "make_config",
    "quantize",
]
