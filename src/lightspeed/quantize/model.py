"""The quantized model: a graph plus a fixed-point type for every tensor and role.

:class:`QuantizedModel` is data: the (shape-inferred) graph, ``precision``
(node -> role -> :class:`FixedType`), ``qparams`` (node -> parameter ->
integers at its role's scale) and ``tensor_types`` (every tensor, inputs
included). ``predict``/``report``/``save`` are thin conveniences over the
emulator, the report and the artifact writer, all stages below this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.artifact import model_hash, read_compiled, save_compiled
from lightspeed.errors import ArtifactError
from lightspeed.fixed import FixedType, to_float
from lightspeed.ir.graph import Graph, Shape
from lightspeed.ops import AutoOptions, CostContext, get_op


@dataclass
class QuantizedModel:
    graph: Graph
    precision: dict[str, dict[str, FixedType]]  # node -> role -> type
    qparams: dict[str, dict[str, np.ndarray]]  # node -> param -> integers
    tensor_types: dict[str, FixedType]
    options: AutoOptions = field(default_factory=AutoOptions)
    default: str = "auto"  # the policy label: auto, trained, search or the one type
    calibration_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    stats: dict[str, Any] = field(
        default_factory=dict
    )  # float-vs-fixed figures on calibration data

    def __post_init__(self) -> None:
        # integer parameters are read-only: the emulator memoises what it derives from them
        # (ops/mac.py), so changing weights means assigning new arrays
        for params in self.qparams.values():
            for key, a in params.items():
                if isinstance(a, np.ndarray):
                    if not a.flags.owndata:
                        a = params[key] = a.copy()
                    a.setflags(write=False)

    # -- shape/type views -------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return list(self.graph.inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self.graph.outputs)

    @property
    def input_shapes(self) -> dict[str, Shape]:
        return dict(self.graph.inputs)

    @property
    def output_shapes(self) -> dict[str, Shape]:
        return {t: self.graph.shapes[t] for t in self.graph.outputs}

    @property
    def input_types(self) -> dict[str, FixedType]:
        return {t: self.tensor_types[t] for t in self.graph.inputs}

    @property
    def output_types(self) -> dict[str, FixedType]:
        return {t: self.tensor_types[t] for t in self.graph.outputs}

    # -- running ----------------------------------------------------------
    def run(self, inputs: Mapping[str, np.ndarray], trace: bool = False):
        """Fixed-point run returning :class:`~lightspeed.ops.Fx` per output (every tensor with trace)."""
        from lightspeed.emulate import run_fixed

        return run_fixed(self, inputs, keep_all=trace)

    def predict_dict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: fx.float() for name, fx in self.run(inputs).items()}

    def predict(self, x: np.ndarray | Mapping[str, np.ndarray]):
        """Bit-exact emulation. One input/output: arrays in, array out; else dicts."""
        from lightspeed.emulate import as_input_dict

        out = self.predict_dict(as_input_dict(self.graph, x))
        if len(out) == 1 and not isinstance(x, Mapping):
            return next(iter(out.values()))
        return out

    def predict_float(self, x: np.ndarray | Mapping[str, np.ndarray]):
        """The float model's prediction (for comparisons)."""
        from lightspeed.emulate import as_input_dict, run_float

        out = run_float(self.graph, as_input_dict(self.graph, x))
        return next(iter(out.values())) if len(out) == 1 and not isinstance(x, Mapping) else out

    # -- analysis ---------------------------------------------------------
    def evaluate(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Per-tensor float-vs-fixed errors and observed overflows on ``inputs``."""
        from lightspeed.emulate import run_fixed, run_float

        flt = run_float(self.graph, inputs, keep_all=True)
        fix = run_fixed(self, inputs, keep_all=True)
        layers = {}
        for node in self.graph.nodes:
            t = node.outputs[0]
            f, x = flt[t], fix[t].float()
            err = np.abs(f - x)
            layers[node.name] = {
                "max_abs_error": float(err.max()) if err.size else 0.0,
                "mean_abs_error": float(err.mean()) if err.size else 0.0,
                "float_range": [float(f.min()), float(f.max())] if f.size else [0.0, 0.0],
            }
        summary = {"samples": int(next(iter(inputs.values())).shape[0]), "layers": layers}
        outs = {}
        for t in self.graph.outputs:
            f, x = flt[t], fix[t].float()
            o = {"max_abs_error": float(np.abs(f - x).max()) if f.size else 0.0}
            if f.ndim == 2 and f.shape[1] > 1:
                o["argmax_agreement"] = float(np.mean(f.argmax(1) == x.argmax(1)))
            outs[t] = o
        summary["outputs"] = outs
        return summary

    def overflow_warnings(self) -> list[str]:
        """Types whose range the calibrated float values exceed (would wrap or saturate)."""
        warnings = []
        for node in self.graph.nodes:
            prec = self.precision[node.name]
            lo, hi = self.calibration_ranges.get(node.outputs[0], (0.0, 0.0))
            for role in ("accum", "result"):
                t = prec.get(role)
                if t is None or node.op in ("softmax",):
                    continue
                # saturating by at most one lsb is a rounding error, not an overflow: a sigmoid
                # reaching 1.0 in float saturates to 1 - lsb in ap_ufixed<W,0,...,SAT>
                slack = t.lsb if t.overflow.startswith("SAT") else 0.0
                if lo < t.min_value - slack or hi > t.max_value + slack:
                    warnings.append(
                        f"{node.name}: calibrated range [{lo:.4g}, {hi:.4g}] overflows {role} "
                        f"{t} [{t.min_value:g}, {t.max_value:g}] ({t.overflow})"
                    )
            if "accum" in prec and "weight" in prec and node.inputs:
                xlo, xhi = self._range_of(node.inputs[0])
                w = self.qparams[node.name].get("weight", self.qparams[node.name].get("scale"))
                if w is not None and w.size:
                    pmax = max(abs(xlo), abs(xhi)) * float(np.max(np.abs(w))) * prec["weight"].lsb
                    if pmax > prec["accum"].max_value:
                        warnings.append(
                            f"{node.name}: products reach ~{pmax:.4g}, beyond accum "
                            f"{prec['accum']} (max {prec['accum'].max_value:g}, {prec['accum'].overflow})"
                        )
        return warnings

    def _range_of(self, tensor: str) -> tuple[float, float]:
        return self.calibration_ranges.get(tensor, (0.0, 0.0))

    def costs(self) -> dict[str, Any]:
        out = {}
        for node in self.graph.nodes:
            ctx = CostContext(
                prec=self.precision[node.name],
                qparams=self.qparams[node.name],
                in_types=[self.tensor_types[t] for t in node.inputs],
                in_shapes=[self.graph.shapes[t] for t in node.inputs],
                out_shapes=[self.graph.shapes[t] for t in node.outputs],
            )
            out[node.name] = get_op(node.op).cost(node, ctx)
        return out

    def report(self) -> dict[str, Any]:
        from lightspeed.quantize.report import build_report

        return build_report(self)

    # -- persistence ------------------------------------------------------
    def save(self, outdir: str | Path, source: dict[str, Any] | None = None) -> Path:
        return save_compiled(self, outdir, source=source)


def load_compiled(path: str | Path) -> QuantizedModel:
    """Load a compiled model directory written by ``q.save`` / ``lightspeed compile``."""
    fields, digest = read_compiled(path)
    q = QuantizedModel(**fields)
    if model_hash(q) != digest:
        raise ArtifactError(f"{path}: contents do not match the manifest's hash; recompile it")
    return q


def fixed_value(m: np.ndarray, t: FixedType) -> np.ndarray:
    return to_float(m, t)
