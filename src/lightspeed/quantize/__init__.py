"""Quantization: the typing policy (parsed once), calibration, one typing loop, the quantized model."""

from lightspeed.ops.base import AutoOptions
from lightspeed.quantize.config import PrecisionConfig, make_config, parse_mode
from lightspeed.quantize.model import QuantizedModel, load_compiled
from lightspeed.quantize.ptq import calibration_ranges, from_trained, quantize
from lightspeed.quantize.type_graph import type_graph

__all__ = [
    "AutoOptions",
    "PrecisionConfig",
    "QuantizedModel",
    "calibration_ranges",
    "from_trained",
    "load_compiled",
    "make_config",
    "parse_mode",
    "quantize",
    "type_graph",
]
