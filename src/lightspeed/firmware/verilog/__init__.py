"""Verilog backend: lower a quantized model to a pipelined netlist, write Verilog-2001.

One emitter per op lives in ``emit_mac.py`` (dense, conv, batchnorm),
``emit_act.py`` (ReLU, clip, leaky ReLU, quant, sigmoid/tanh/softmax ROMs) and
``emit_misc.py`` (add, mul, concat, pooling, wiring); ``writer.py`` prints the
netlist as one flat module.
"""

from __future__ import annotations

from lightspeed.firmware.verilog.lowering import EMITTERS, Design, check_supported, lower, port_name
from lightspeed.firmware.verilog.writer import write_verilog

build_design = lower

__all__ = [
    "EMITTERS",
    "Design",
    "build_design",
    "check_supported",
    "lower",
    "port_name",
    "write_verilog",
]
