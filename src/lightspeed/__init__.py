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

from lightspeed.__about__ import __version__

# `quantize` here is the function (every precision mode); the subpackage stays lightspeed.quantize
# for `from lightspeed.quantize import ...`
from lightspeed.api import load, quantize
from lightspeed.artifact import is_compiled_dir
from lightspeed.errors import LightspeedError
from lightspeed.fixed import FixedType, parse_type
from lightspeed.ir import Graph
from lightspeed.quantize import AutoOptions, QuantizedModel, load_compiled

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
