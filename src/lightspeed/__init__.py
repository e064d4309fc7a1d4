"""lightspeed: real-time machine learning for science on heterogeneous compute.

The small public API::

    import lightspeed
    g = lightspeed.load("model.onnx")                        # float model graph
    q = lightspeed.quantize(g, precision="auto", calibration=X)
    y = q.predict(X)                                         # bit-exact fixed-point emulation
    q.report(); q.save("outdir")
    q2 = lightspeed.load_compiled("outdir")
"""

from __future__ import annotations

from typing import Any

from lightspeed.__about__ import __version__
from lightspeed.artifact import is_compiled_dir, load_compiled
from lightspeed.errors import LightspeedError
from lightspeed.fixed import FixedType, parse_type
from lightspeed.ir import Graph
from lightspeed.quantize import AutoOptions, QuantizedModel, quantize


def load(
    source: Any, input_shape: tuple[int, ...] | dict[str, tuple[int, ...]] | None = None
) -> Graph:
    """Import a model (ONNX/QONNX path or ModelProto, or a torch ``nn.Module``) as a float graph.

    ``input_shape`` (without the batch axis) is needed for dynamic shapes and
    for PyTorch modules.
    """
    from lightspeed.frontends import load_model

    return load_model(source, input_shape=input_shape)


__all__ = [
    "AutoOptions",
    "FixedType",
    "Graph",
    "LightspeedError",
    "QuantizedModel",
    "__version__",
    "is_compiled_dir",
    "load",
    "load_compiled",
    "parse_type",
    "quantize",
]
