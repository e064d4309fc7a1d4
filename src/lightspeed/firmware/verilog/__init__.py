"""Verilog backend: lower a quantized model to a pipelined netlist, write Verilog-2001.

The emitter modules mirror :mod:`lightspeed.ops` by name, one per op family:

* ``emit_activations.py``: relu, leaky_relu, clip
* ``emit_quant.py``: quant
* ``emit_tables.py``: sigmoid, tanh, softmax (ROM look-ups)
* ``emit_dense.py``, ``emit_conv.py``, ``emit_scale.py`` (batchnorm): MACs
* ``emit_elementwise.py``: add, mul, concat
* ``emit_pooling.py``: maxpool, avgpool, global_avgpool
* ``emit_reshape.py``: flatten, reshape, transpose (pure wiring)
* ``emit_trees.py``: tree_ensemble

Each registers its emitters with ``lowering.register(op)``; ``lowering.py``
imports every ``emit_*`` module it finds (a new family is a new file, no edit
elsewhere) and drives the lowering, taking pipeline placement from the ops'
``fusable`` / ``wiring`` flags. ``arith.py`` holds the shared arithmetic
(casts, constant products, the multiply-accumulate); ``writer.py`` prints the
netlist as one flat module. ``stream.py`` builds ``--io stream`` designs: one lowered
datapath per convolution/pooling stage behind line buffers, fed one pixel per clock.
"""

from __future__ import annotations

from lightspeed.firmware.verilog.lowering import (
    EMITTERS,
    Design,
    check_supported,
    load_emitters,
    lower,
    port_name,
)
from lightspeed.firmware.verilog.writer import write_verilog

build_design = lower

__all__ = [
    "EMITTERS",
    "Design",
    "build_design",
    "check_supported",
    "load_emitters",
    "lower",
    "port_name",
    "write_verilog",
]
