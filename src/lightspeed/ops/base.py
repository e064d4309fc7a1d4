"""What an operator is: one record of plain functions per op.

Each op module defines an :class:`Op` whose functions spell out, once, the
op's shape rule, float semantics, fixed-point semantics (the contract every
backend follows), parameter quantization, automatic precision and cost.
Backends (firmware emitters, HLS writer) look ops up by ``Op.name``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightspeed.errors import FixedTypeError
from lightspeed.fixed import FixedType, as_exact, quantize_float, requantize, type_for_int_range
from lightspeed.ir.graph import Node, Shape

Precision = dict[str, FixedType]  # role -> type, e.g. {"weight": ..., "accum": ..., "result": ...}
QParams = dict[str, np.ndarray]  # param name -> integers at the role's scale


@dataclass(frozen=True)
class Fx:
    """A fixed-point tensor: integers ``m`` (batch first) of type ``t``."""

    m: np.ndarray
    t: FixedType

    def float(self) -> np.ndarray:
        from lightspeed.fixed import to_float

        return to_float(self.m, self.t)


@dataclass
class TrainedContext:
    """What trained typing knows when it types one node: its input types and pinned roles."""

    in_types: list[FixedType]
    fixed: Precision  # roles trained in the source model (or pinned by the user)
    in_shapes: list[Shape] = field(default_factory=list)  # IR shapes (no batch) of the inputs


@dataclass
class AutoContext:
    """What automatic precision knows when it types one node."""

    in_types: list[FixedType]
    out_ranges: list[tuple[float, float]]  # calibrated (min, max) of each float output
    fixed: Precision  # roles the user pinned; never override these
    options: AutoOptions
    params: dict[str, np.ndarray]  # float params of the node


@dataclass(frozen=True)
class AutoOptions:
    """Knobs of ``precision="auto"`` (documented in docs/quantization.md)."""

    weight_bits: int = 16  # total bits of weights/biases/scales
    frac_bits: int = 10  # fractional bits kept by results and inputs
    margin_bits: int = 1  # extra integer bits above the calibrated range
    rounding: str = "RND"  # quantization mode of results
    overflow: str = "SAT"  # overflow mode of results (calibrated ranges can be exceeded)
    table_bits: int = 18  # width of lookup-table entries


@dataclass
class Cost:
    """Arithmetic cost of one node in one inference."""

    params: int = 0  # stored constants
    mults: int = 0  # non-trivial multiplications (zero and ±2^k weights excluded)
    adds: int = 0
    bops: int = 0  # bit operations: sum over multiplications of w_bits*x_bits, plus adds*acc_bits
    table_bits: int = 0  # ROM bits for lookup tables


def _no_params(node: Node, prec: Precision) -> QParams:
    return {}


def _no_cost(node: Node, ctx: CostContext) -> Cost:
    return Cost()


@dataclass
class CostContext:
    """What a cost model needs to know about one typed node."""

    prec: Precision
    qparams: QParams
    in_types: list[FixedType]
    in_shapes: list[Shape]
    out_shapes: list[Shape]


@dataclass(frozen=True)
class Op:
    name: str
    roles: tuple[str, ...]
    infer_shape: Callable[[Node, list[Shape]], list[Shape]]
    run_float: Callable[[Node, list[np.ndarray]], list[np.ndarray]]
    run_fixed: Callable[[Node, list[Fx], Precision, QParams], list[Fx]]
    auto_precision: Callable[[Node, AutoContext], Precision]
    quantize_params: Callable[[Node, Precision], QParams] = _no_params
    cost: Callable[[Node, CostContext], Cost] = _no_cost
    # roles whose type comes from the node's params (typed before the others)
    param_roles: tuple[str, ...] = ()
    doc: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)  # default attrs
    # typing from the input types alone (precision="trained"); None: the op needs calibration
    # or config types and is refused in trained mode with the node's name
    trained_precision: Callable[[Node, TrainedContext], Precision] | None = None
    # trained_precision gives documented default types (tables, a rounded 1/K), not the exact
    # value a float framework computes (docs/quantization.md, "trained defaults")
    trained_default: bool = False
    # integer parameter -> the role whose type scales it (default: the role of the same name)
    param_role: dict[str, str] = field(default_factory=dict)
    # firmware: cheap element-wise op that shares the pipeline stage of the layer before it
    fusable: bool = False
    # firmware: pure data movement (no logic, no pipeline register of its own)
    wiring: bool = False
    # ONNX import: handlers keyed by ONNX op type (see lightspeed.ops.onnx_import)
    onnx_import: dict[str, Any] = field(default_factory=dict)
    # ONNX import: rewrites of the ONNX graph run before any handler, e.g. fusing the float
    # form an exporter writes for this op (see lightspeed.ops.onnx_import.OnnxGraph)
    onnx_rewrite: Callable[[Any], None] | None = None
    # QONNX export: writes this node as ONNX nodes (see lightspeed.ops.onnx_export); None: not exportable
    onnx_export: Callable[..., None] | None = None
    # an import-time form that passes rewrite away (never in a quantized model or the docs)
    internal: bool = False

    def role_of(self, param: str) -> str:
        """The role whose type scales integer parameter ``param``."""
        return self.param_role.get(param, param)


# ---------------------------------------------------------------------------
# helpers shared by op modules


def param_type(values: np.ndarray, width: int, signed: bool | None = None) -> FixedType:
    """Type of ``width`` bits whose integer part just holds max |values| (rounded to nearest)."""
    v = np.asarray(values, dtype=np.float64)
    if signed is None:
        signed = bool(np.any(v < 0)) or v.size == 0
    mag = float(np.max(np.abs(v))) if v.size else 0.0
    if mag == 0.0:
        return FixedType(width, 1 if signed else 0, signed, "RND", "SAT")
    # integer bits so that round(mag) fits: mag < 2**(i - signed)
    i = int(np.floor(np.log2(mag))) + 1 + (1 if signed else 0)
    t = FixedType(width, i, signed, "RND", "SAT")
    # rounding may push mag up to the next power of two; SAT then clips by one lsb at most
    return t


def result_type(lo: float, hi: float, opts: AutoOptions, signed: bool | None = None) -> FixedType:
    """Result type from a calibrated range: integer bits from the range plus a margin."""
    if signed is None:
        signed = lo < 0
    mag = max(abs(lo), abs(hi))
    if mag == 0.0:
        ibits = 1 if signed else 0
    else:
        ibits = int(np.floor(np.log2(mag))) + 1 + (1 if signed else 0) + opts.margin_bits
    width = max(ibits + opts.frac_bits, 1)
    return FixedType(min(width, 64), ibits, signed, opts.rounding, opts.overflow)


def int_range(t: FixedType) -> tuple[int, int]:
    return t.min_int, t.max_int


def exact_type(lo: int, hi: int, frac: int) -> FixedType:
    """Smallest exact type (TRN/WRAP: nothing is ever lost) for integers lo..hi at ``frac``."""
    return type_for_int_range(int(lo), int(hi), frac, signed=lo < 0 or None)


def exact_capped(lo: int, hi: int, frac: int) -> FixedType:
    """:func:`exact_type`, or where that needs more than 64 bits the fraction cut to fit.

    The cut rounds to nearest even (RND_CONV); the integer bits still hold lo..hi.
    """
    for cut in range(max(frac, 0) + 1):
        if cut == 0:
            try:
                return exact_type(lo, hi, frac)
            except FixedTypeError:
                continue
        top = -((-hi) >> cut)  # ceil: rounding up must still fit
        try:
            return type_for_int_range(lo >> cut, top, frac - cut, lo < 0, "RND_CONV", "SAT")
        except FixedTypeError:
            continue
    raise FixedTypeError(f"no type of at most 64 bits holds the integers {lo}..{hi}")


def merge(fixed: Precision, auto: Precision) -> Precision:
    """User-pinned roles win over automatically chosen ones."""
    out = dict(auto)
    out.update(fixed)
    return out


def quantize_param(values: np.ndarray, t: FixedType, what: str) -> np.ndarray:
    return quantize_float(np.asarray(values, dtype=np.float64), t, what=what)


def align(m: np.ndarray, frac_in: int, frac_out: int) -> np.ndarray:
    """Shift integers to a finer (or equal) scale exactly."""
    if frac_out < frac_in:
        raise ValueError("align only refines the scale")
    return as_exact(m, frac_out - frac_in) << (frac_out - frac_in)


def cast_fx(x: Fx, t: FixedType) -> Fx:
    return Fx(requantize(x.m, x.t.frac, t), t)


def same_shape(node: Node, in_shapes: list[Shape]) -> list[Shape]:
    return [in_shapes[0]]


def result_auto(node: Node, ctx: AutoContext) -> Precision:
    """Auto precision for ops with a single ``result`` role sized from calibration."""
    lo, hi = ctx.out_ranges[0]
    return merge(ctx.fixed, {"result": result_type(lo, hi, ctx.options)})


def is_pow2(v: np.ndarray) -> np.ndarray:
    """True where an integer is 0 or ±2**k (no multiplier needed in hardware)."""
    a = np.abs(np.asarray(v, dtype=np.int64))
    return (a & (a - 1)) == 0


def mac_cost(w: np.ndarray, repeats: int, ctx: CostContext, x_t: FixedType) -> Cost:
    """Cost of a constant-weight multiply-accumulate repeated ``repeats`` times."""
    w_t, acc_t = ctx.prec["weight"], ctx.prec["accum"]
    nonzero = int(np.count_nonzero(w))
    mults = int(np.count_nonzero(~is_pow2(w)))
    n_out = w.shape[-1] if w.ndim else 1
    adds = max(nonzero - n_out, 0) + (n_out if "bias" in ctx.qparams else 0)
    return Cost(
        params=int(w.size) + (int(ctx.qparams["bias"].size) if "bias" in ctx.qparams else 0),
        mults=mults * repeats,
        adds=adds * repeats,
        bops=(mults * w_t.width * x_t.width + adds * acc_t.width) * repeats,
    )
