"""What an op module needs to write itself as QONNX: the graph builder and ``Quant`` attributes.

An op's ``Op.onnx_export(b, node, key, ins, out, prec, qparams, shapes)``
appends ONNX nodes computing ``out`` from the ONNX tensors ``ins``, with the
node name ``key``; quantized constants go behind their ``Quant`` with
:meth:`Builder.quant_const`. The driver (:mod:`lightspeed.frontends.qonnx_export`)
adds the input and result ``Quant`` nodes and the exact-type metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightspeed.fixed import FixedType, to_float

META_KEY = "lightspeed.precision"
QONNX_DOMAIN = "qonnx.custom_op.general"
_ROUNDING = {"RND_CONV": "ROUND", "TRN": "FLOOR", "TRN_ZERO": "ROUND_TO_ZERO"}
# attrs that the ONNX op cannot carry exactly (tables, exact float bounds)
META_ATTRS = (
    "table_size",
    "table_range",
    "table_layout",
    "exp_table_size",
    "exp_range",
    "inv_table_size",
    "min",
    "max",
    "alpha",
    "gamma",
)


def quant_attrs(t: FixedType) -> dict[str, Any]:
    """QONNX Quant attributes nearest to ``t`` (exact for RND_CONV/TRN/TRN_ZERO with SAT/SAT_SYM)."""
    return {
        "signed": int(t.signed),
        "narrow": int(t.signed and t.overflow == "SAT_SYM"),
        "rounding_mode": _ROUNDING.get(t.rounding, "ROUND"),
    }


class Builder:
    """Collects ONNX nodes and initializers under fresh, unique names."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype  # numpy float type of every tensor
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.names: set[str] = set()

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def const(self, base: str, value: Any, dtype: Any = None) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.inits.append(
            numpy_helper.from_array(np.asarray(value, dtype=dtype or self.dtype), name)
        )
        return name

    def node(
        self,
        op: str,
        inputs: list[str],
        outputs: list[str],
        name: str,
        domain: str = "",
        **attrs: Any,
    ) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))

    def quant(self, x: str, out: str, t: FixedType, name: str) -> None:
        scale = self.const(f"{name}_scale", np.ldexp(1.0, -t.frac))
        zp = self.const(f"{name}_zeropt", 0.0)
        bits = self.const(f"{name}_bitwidth", float(t.width))
        self.node("Quant", [x, scale, zp, bits], [out], name, domain=QONNX_DOMAIN, **quant_attrs(t))

    def quant_const(self, base: str, m: np.ndarray, t: FixedType) -> str:
        """A quantized constant behind its Quant node; returns the Quant output name."""
        raw = self.const(base, to_float(np.asarray(m), t))
        out = self.fresh(f"{base}_q")
        self.quant(raw, out, t, self.fresh(f"{base}_quant"))
        return out


def simple(onnx_op: str, **fixed: Any):
    """Export as one ONNX node of type ``onnx_op`` with constant attributes."""

    def emit(b: Builder, node: Any, key: str, ins: list[str], out: str, prec, qp, shapes) -> None:
        b.node(onnx_op, ins, [out], key, **fixed)

    return emit
