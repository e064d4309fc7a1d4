"""Automatic mixed precision: per-layer bit widths that minimise cost at a given accuracy.

Method (greedy descent with quantization-aware fine-tuning):

1. Convert the float model to a QAT model at a uniform ``start_bits`` (weights,
   activations; the input at ``input_bits``) and train it ``init_epochs``. If
   that misses the accuracy goal, widen everything (+2 bits, the input +4) and
   retrain, up to ``widen_rounds`` times.
2. The *knobs* are the weight width of every multiply-accumulate layer (its
   bias follows), the output width of every quantized activation, and the
   input width. Integer bits stay where the data put them; a narrower width
   drops fractional bits.
3. Each round tries every knob one ``step`` narrower, measuring validation
   accuracy (one eval pass, no training) and cost (``cost(QuantizedModel)``:
   ``"bops"``, bit operations from ``QuantizedModel.costs()``, the default; or
   ``"lut"``, LUT-equivalents ``LUT + 55 DSP`` from the firmware's analytic
   estimate, about 0.25 s per evaluation for the jet tagger). Among moves that
   keep accuracy >= ``target`` x float accuracy, the one saving the most cost
   is taken. If none does, the move with the best cost saved per accuracy lost
   is taken and the model fine-tuned ``finetune_epochs``; if accuracy then
   recovers, the move is kept, else reverted and that knob frozen (until the
   next accepted move changes the model, with ``retry_frozen``).
4. It stops when every knob is frozen or at ``min_bits``; a final
   ``final_epochs`` of QAT polishes the result (kept only if it still meets
   the target).

Cost of the search: at most ``rounds x knobs`` eval passes over the
validation set plus ``init_epochs + (#fine-tunes) x finetune_epochs +
final_epochs`` training epochs; :class:`SearchResult` reports the actual
counts and seconds. The result is a trained QAT model whose export
(:func:`lightspeed.nn.to_quantized`) the emulator runs bit for bit.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightspeed.errors import ConfigError, InputError, require
from lightspeed.quantize.model import QuantizedModel


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the mixed-precision search (see the module docstring)."""

    target: float = 0.99  # keep accuracy >= target * float accuracy (relative)
    start_bits: int = 8  # uniform width of weights and activations at the start
    input_bits: int = 12  # width of the input type at the start
    min_bits: int = 2
    step: int = 1
    init_epochs: int = 3
    finetune_epochs: int = 1
    final_epochs: int = 2
    max_rounds: int = 60
    max_bits: int = 24  # widest width when the start must be widened to reach the goal
    widen_rounds: int = 4  # times the start may be widened (+2 bits, +4 on the input)
    retry_frozen: bool = True  # after an accepted move, retry knobs that failed before
    lr: float = 1e-3
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.target <= 1.0:
            raise ConfigError(
                f"target {self.target} must be in (0, 1]: the kept fraction of float accuracy"
            )
        if self.min_bits < 1 or self.start_bits < self.min_bits or self.step < 1:
            raise ConfigError("need 1 <= min_bits <= start_bits and step >= 1")


@dataclass
class SearchResult:
    model: Any  # the trained QAT torch model
    quantized: QuantizedModel
    widths: dict[str, int]  # knob -> width
    accuracy: float  # validation accuracy of the result
    float_accuracy: float
    cost: float
    start_cost: float
    target: float = 0.99
    history: list[dict[str, Any]] = field(default_factory=list)  # accepted/rejected moves
    evaluations: int = 0
    epochs: int = 0
    seconds: float = 0.0

    @property
    def met_goal(self) -> bool:
        return self.accuracy >= self.target * self.float_accuracy

    def summary(self) -> dict[str, Any]:
        return {
            "met_goal": self.met_goal, "target": self.target,
            "widths": self.widths, "accuracy": self.accuracy, "float_accuracy": self.float_accuracy,
            "cost": self.cost, "start_cost": self.start_cost, "evaluations": self.evaluations,
            "epochs": self.epochs, "seconds": round(self.seconds, 2), "moves": len(self.history),
        }  # fmt: skip


@dataclass
class _Knob:
    name: str
    quant: Any  # lightspeed.nn.Quantizer
    bias: Any = None  # bias quantizer following a weight knob
    frozen: bool = False

    @property
    def width(self) -> int:
        return int(self.quant.width.max())


def bops(q: QuantizedModel) -> float:
    """Total bit operations of one inference (the default cost)."""
    return float(sum(c.bops for c in q.costs().values()))


DSP_LUTS = 55  # LUT-equivalents of one DSP slice (the resource metric HGQ uses: LUT + 55 DSP)


def firmware_estimate(q: QuantizedModel) -> Any:
    """The firmware's analytic LUT/FF/DSP estimate of ``q``."""
    from lightspeed.firmware.config import FirmwareOptions
    from lightspeed.firmware.estimate import estimate_design
    from lightspeed.firmware.verilog import build_design

    return estimate_design(build_design(q, FirmwareOptions()))


def lut_equivalents(q: QuantizedModel) -> float:
    """LUTs + 55 x DSPs from the firmware estimate: one number for LUT- and DSP-mapped designs."""
    est = firmware_estimate(q)
    return float(est.lut) + DSP_LUTS * float(est.dsp)


COSTS: dict[str, Callable[[QuantizedModel], float]] = {"bops": bops, "lut": lut_equivalents}


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a torch classifier in eval mode."""
    torch = require("torch", "torch", "the precision search")
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(x, dtype=torch.float32))
    return float((out.argmax(dim=1).numpy() == np.asarray(y)).mean())


def _knobs(model: Any) -> list[_Knob]:
    from lightspeed.nn import QActLayer, QInput, QMacLayer

    knobs = []
    for name, m in model.named_modules():
        if isinstance(m, QInput):
            knobs.append(_Knob(f"{name or 'input'}.input", m.quant))
        elif isinstance(m, QMacLayer):
            knobs.append(_Knob(f"{name}.weight", m.weight_quant, m.bias_quant))
            if m.output_quant is not None:
                knobs.append(_Knob(f"{name}.output", m.output_quant))
        elif isinstance(m, QActLayer) and m.output_quant is not None:
            knobs.append(_Knob(f"{name}.output", m.output_quant))
    return knobs


def _set_width(k: _Knob, width: int) -> None:
    """Narrow/widen keeping integer bits; a following bias keeps at least the weight's step."""
    q = k.quant
    q.set_type(width, q.integer.numpy().astype(int))
    if k.bias is not None:
        frac = max(int(width) - int(q.integer.max()), 1)
        bi = k.bias.integer.numpy().astype(int)
        k.bias.set_type(np.maximum(bi + frac, 2), bi)


def _thaw(knobs: list[_Knob], cfg: SearchConfig) -> None:
    """After an accepted move the model changed: frozen knobs get another chance (if allowed)."""
    if cfg.retry_frozen:
        for k in knobs:
            k.frozen = False


def search(
    float_model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    input_shape: tuple[int, ...] | dict[str, tuple[int, ...]],
    config: SearchConfig | None = None,
    cost: str | Callable[[QuantizedModel], float] = "bops",
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Search per-layer widths for a float ``nn.Sequential`` classifier (see module docstring)."""
    torch = require("torch", "torch", "the precision search")
    from lightspeed.nn import convert, fit, to_quantized

    cfg = config or SearchConfig()
    if isinstance(cost, str) and cost not in COSTS:
        raise ConfigError(
            f"unknown search cost {cost!r}; use one of {', '.join(COSTS)} or a callable"
        )
    cost_fn = COSTS[cost] if isinstance(cost, str) else cost
    t0 = time.perf_counter()
    say = progress or (lambda s: None)
    if len(x_val) == 0 or len(x_train) == 0:
        raise InputError("the search needs non-empty training and validation data")
    torch.manual_seed(cfg.seed)
    acc_f = accuracy(float_model, x_val, y_val)
    goal = cfg.target * acc_f
    model = convert(float_model, x_train[: min(len(x_train), 4096)], weight_bits=cfg.start_bits,
                    act_bits=cfg.start_bits, input_bits=cfg.input_bits)  # fmt: skip
    epochs = 0

    def train(n: int) -> None:
        nonlocal epochs
        if n > 0:
            fit(
                model,
                x_train,
                y_train,
                epochs=n,
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                seed=cfg.seed + epochs,
            )
            epochs += n

    def measure() -> tuple[float, float]:
        return accuracy(model, x_val, y_val), cost_fn(to_quantized(model, input_shape))

    train(cfg.init_epochs)
    acc, c = measure()
    start_cost = c
    evals = 1
    say(
        f"start: {cfg.start_bits}-bit, accuracy {acc:.4f} (float {acc_f:.4f}, goal {goal:.4f}), cost {c:.0f}"
    )
    knobs = _knobs(model)
    for _ in range(cfg.widen_rounds):  # the start is too narrow for the goal: widen, retrain
        if acc >= goal:
            break
        for k in knobs:
            _set_width(k, min(k.width + (4 if k.name.endswith(".input") else 2), cfg.max_bits))
        train(cfg.init_epochs)
        acc, c = measure()
        start_cost = c
        evals += 1
        say(f"widened to {max(k.width for k in knobs)} bits: accuracy {acc:.4f}, cost {c:.0f}")
    history: list[dict[str, Any]] = []
    for _ in range(cfg.max_rounds):
        live = [k for k in knobs if not k.frozen and k.width - cfg.step >= cfg.min_bits]
        if not live:
            break
        trials = []
        for k in live:
            w0 = k.width
            state = copy.deepcopy(model.state_dict())
            _set_width(k, w0 - cfg.step)
            a, cc = measure()
            evals += 1
            trials.append((k, a, cc))
            model.load_state_dict(state)  # restores the width buffers too
        ok = [t for t in trials if t[1] >= goal and t[2] < c]
        if ok:
            k, a, cc = max(ok, key=lambda t: c - t[2])
            _set_width(k, k.width - cfg.step)
            history.append(
                {"knob": k.name, "width": k.width, "accuracy": a, "cost": cc, "finetuned": False}
            )
            acc, c = a, cc
            say(f"{k.name} -> {k.width} bits: accuracy {a:.4f}, cost {cc:.0f}")
            _thaw(knobs, cfg)
            continue
        saving = [t for t in trials if t[2] < c]
        if not saving:
            break
        k, a, cc = max(saving, key=lambda t: (c - t[2]) / max(acc - t[1], 1e-6))
        state = copy.deepcopy(model.state_dict())
        _set_width(k, k.width - cfg.step)
        train(cfg.finetune_epochs)
        a, cc = measure()
        evals += 1
        if a >= goal:
            history.append(
                {"knob": k.name, "width": k.width, "accuracy": a, "cost": cc, "finetuned": True}
            )
            acc, c = a, cc
            say(f"{k.name} -> {k.width} bits after fine-tuning: accuracy {a:.4f}, cost {cc:.0f}")
            _thaw(knobs, cfg)
        else:
            model.load_state_dict(state)  # restores the width buffers too
            k.frozen = True
            history.append(
                {"knob": k.name, "width": k.width - cfg.step, "accuracy": a, "rejected": True}
            )
            say(f"{k.name}: {k.width - cfg.step} bits loses too much ({a:.4f}); kept at {k.width}")
    if cfg.final_epochs:
        state = copy.deepcopy(model.state_dict())
        train(cfg.final_epochs)
        a, cc = measure()
        evals += 1
        if a >= goal and a >= acc:
            acc, c = a, cc
        else:
            model.load_state_dict(state)
    q = to_quantized(model, input_shape)
    return SearchResult(
        model=model, quantized=q, widths={k.name: k.width for k in knobs}, accuracy=acc,
        float_accuracy=acc_f, cost=c, start_cost=start_cost, target=cfg.target, history=history, evaluations=evals,
        epochs=epochs, seconds=time.perf_counter() - t0,
    )  # fmt: skip


def search_graph(
    graph: Any,
    inputs: Any,
    labels: np.ndarray | None = None,
    budget: float = 0.01,
    cost: str | Callable[[QuantizedModel], float] = "bops",
    config: SearchConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Search widths for a float IR classifier (what ``lightspeed compile --precision search`` runs).

    ``inputs`` is sample data (array or {input: array}); 80% trains, 20%
    validates (a seeded shuffle). ``labels`` are class indices; without them
    the float model's own argmax is the target (the search then keeps
    ``1 - budget`` agreement with float). ``budget`` is the allowed relative
    accuracy loss.
    """
    torch = require(
        "torch", "torch", "the precision search (lightspeed compile --precision search)"
    )
    from lightspeed.emulate import as_input_dict, check_inputs, run_float
    from lightspeed.nn import from_graph

    if not 0.0 <= budget < 1.0:
        raise ConfigError(
            f"--budget {budget} must be in [0, 1): the allowed relative accuracy loss, e.g. 0.01"
        )
    if inputs is None:
        raise ConfigError(
            "the precision search needs sample inputs: --calibration DATA.npy (and --labels)"
        )
    if len(graph.inputs) != 1:
        raise ConfigError("the precision search handles single-input models")
    data = check_inputs(graph, as_input_dict(graph, inputs))
    x = next(iter(data.values())).astype(np.float32)
    out = run_float(graph, data)[graph.outputs[0]]
    if out.ndim != 2 or out.shape[1] < 2:
        raise ConfigError("the precision search needs a classifier (output shape (batch, classes)); "
                          "use --precision auto for other models")  # fmt: skip
    y = out.argmax(axis=1) if labels is None else np.asarray(labels).reshape(-1).astype(np.int64)
    if len(y) != len(x):
        raise InputError(f"{len(y)} labels for {len(x)} samples; give one class index per sample")
    if len(x) < 50:
        raise InputError(
            f"only {len(x)} samples: the search needs a few hundred or more to train and validate"
        )
    perm = np.random.default_rng(0).permutation(len(x))
    n_val = max(len(x) // 5, 1)
    val, tr = perm[:n_val], perm[n_val:]
    base = config or SearchConfig()
    cfg = SearchConfig(**{**base.__dict__, "target": 1.0 - budget})
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: threads only add contention
    try:
        res = search(from_graph(graph), x[tr], y[tr], x[val], y[val], dict(graph.inputs), cfg,
                     cost=cost, progress=progress)  # fmt: skip
    finally:
        torch.set_num_threads(prev)
    res.quantized.graph.name = graph.name
    res.quantized.default = "search"  # the report's precision label
    res.quantized.stats = res.quantized.evaluate(data)
    return res
