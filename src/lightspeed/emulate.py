"""The bit-exact emulator: runs a quantized graph on a batch, node by node.

The fixed-point semantics of each op live in its module under
:mod:`lightspeed.ops`; this module only walks the graph (torch.fx-style
interpreter), validates inputs and optionally keeps every intermediate
tensor for debugging (``trace``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from lightspeed.errors import InputError
from lightspeed.fixed import quantize_float
from lightspeed.ir.graph import Graph
from lightspeed.ops import Fx, _mac_jit, get_op
from lightspeed.ops import mac as _mac
from lightspeed.ops.gather import check_index_inputs, graph_size_hint
from lightspeed.ops.recurrent import sequence_mismatch

if TYPE_CHECKING:
    from lightspeed.quantize.model import QuantizedModel


def check_inputs(
    graph: Graph, inputs: Mapping[str, np.ndarray], for_fixed: bool = False
) -> dict[str, np.ndarray]:
    """Validate names, dtypes, shapes and finiteness; return float64 arrays.

    ``for_fixed``: the arrays go to ``quantize_float``, which takes float32 exactly as it
    is and refuses NaN/Inf itself, so neither the float64 copy nor the scan is made here."""
    missing = [n for n in graph.inputs if n not in inputs]
    extra = [n for n in inputs if n not in graph.inputs]
    if missing or extra:
        raise InputError(
            f"model inputs are {list(graph.inputs)}; missing {missing}, unexpected {extra}"
        )
    out = {}
    batch = None
    for name, shape in graph.inputs.items():
        a = np.asarray(inputs[name])
        if a.dtype.kind not in "fiub":
            raise InputError(f"input {name!r} has dtype {a.dtype}; give a float or integer array")
        if tuple(a.shape[1:]) != tuple(shape):
            seq = sequence_mismatch(graph, name, a.shape)
            if seq is not None:
                raise InputError(seq)
            hint = " (add a batch axis: x[None])" if tuple(a.shape) == tuple(shape) else ""
            hint = hint or graph_size_hint(graph, name)
            raise InputError(
                f"input {name!r} has shape {a.shape}; expected (batch, {', '.join(map(str, shape))})"
                + hint
            )
        if batch is not None and a.shape[0] != batch:
            raise InputError(f"inputs have different batch sizes ({batch} and {a.shape[0]})")
        batch = a.shape[0]
        if for_fixed and a.dtype in (np.float32, np.float64):
            out[name] = a
            continue
        a = a.astype(np.float64, copy=False)
        if not np.all(np.isfinite(a)):
            raise InputError(f"input {name!r} contains NaN or Inf; clean it before inference")
        out[name] = a
    check_index_inputs(graph, inputs)  # edge lists: every index inside the compiled graph
    return out


def run_float(
    graph: Graph, inputs: Mapping[str, np.ndarray], keep_all: bool = False
) -> dict[str, np.ndarray]:
    """Float64 reference model. Returns the outputs (or every tensor with ``keep_all``)."""
    env = dict(check_inputs(graph, inputs))
    for node in graph.nodes:
        outs = get_op(node.op).run_float(node, [env[t] for t in node.inputs])
        env.update(zip(node.outputs, outs, strict=True))
    return env if keep_all else {t: env[t] for t in graph.outputs}


# Samples per chunk. Bigger chunks amortise the per-op Python overhead, but from about 2048
# rows a small MLP's temporaries outgrow what glibc keeps around, and the page faults of
# re-touching memory handed back to the OS cost more than the arithmetic.
CHUNK_ROWS = 1024
CHUNK_BYTES = 1 << 25  # at most this much for the widest tensor of a chunk (big feature maps)
MIN_CHUNK_ROWS = 64  # but at least this many rows (the numba kernels vectorise over them)
# tensor elements per chunk (all tensors of a sample, times rows) from which threads pay:
# below, ops are short, hold the GIL for much of their time and threads only contend
# (LIGHTSPEED_THREADS overrides)
THREAD_MIN_ELEMS = 1 << 19
# unchunked runs keep BLAS to one thread between these multiply-adds: below, limiting costs
# more (~20 us) than it saves; above, BLAS threads may pay
BLAS_MIN_MACS = 1 << 18
BLAS_MAX_MACS = 1 << 24


def run_fixed(
    q: QuantizedModel, inputs: Mapping[str, np.ndarray], keep_all: bool = False
) -> dict[str, Fx]:
    """Bit-exact fixed-point run. Inputs are floats, quantized to the model's input types.

    Large batches run in chunks of samples (every op is per sample), on a few threads
    when more than one core is available and chunks are heavy enough; the bits never
    depend on it.
    """
    arrays = check_inputs(q.graph, inputs, for_fixed=True)
    batch = next(iter(arrays.values())).shape[0] if arrays else 0
    macs, rows, chunkable = _model_facts(q)
    if batch * macs >= _mac.JIT_MIN_WORK:
        load_jit()  # worth the one-off numba start-up: every MAC may now use it
    if batch <= rows or not chunkable:
        # BLAS threads only pay on big products; on mid-sized ones they spin and thrash (tiny
        # ones run on one thread anyway, e.g. OpenBLAS below 2**18 multiply-adds)
        limit = BLAS_MIN_MACS <= batch * macs < BLAS_MAX_MACS
        with _single_threaded_blas() if limit else contextlib.nullcontext():
            return _run_fixed(q, arrays, keep_all)
    starts = range(0, batch, rows)
    parts = [{k: v[i : i + rows] for k, v in arrays.items()} for i in starts]
    threads = _threads(len(parts), rows * _elems_per_sample(q))
    with _single_threaded_blas():  # we parallelise over chunks; nested BLAS threads thrash
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(lambda a: _run_fixed(q, a, keep_all), parts))
        else:
            results = [_run_fixed(q, a, keep_all) for a in parts]
    return {t: _concat([r[t] for r in results]) for t in results[0]}


def load_jit() -> bool:
    """Load the optional numba kernels now (~0.3 s once per process, e.g. when a server
    starts) so that every later run uses them whatever its size; False without numba."""
    from lightspeed import _fixed_jit

    return _mac_jit.kernels() is not None and _fixed_jit.kernels() is not None


def _chunk_rows(q: QuantizedModel) -> int:
    """Samples per chunk: CHUNK_BYTES for the widest tensor, within [MIN_CHUNK_ROWS, CHUNK_ROWS]."""
    widest = max((math.prod(s) for s in q.graph.shapes.values()), default=1)
    rows = CHUNK_BYTES // (8 * max(widest, 1))
    return max(min(MIN_CHUNK_ROWS, CHUNK_ROWS), min(rows, CHUNK_ROWS))


def _elems_per_sample(q: QuantizedModel) -> int:
    """Elements of all tensors of one sample (the data each chunk's ops move, per row)."""
    return sum(int(np.prod(s)) for s in q.graph.shapes.values())


def _single_threaded_blas():
    controller = _blas_controller()
    if controller is None:  # optional: without threadpoolctl BLAS keeps its own threading
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (building it scans them: ~0.4 ms)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _run_fixed(
    q: QuantizedModel, arrays: Mapping[str, np.ndarray], keep_all: bool
) -> dict[str, Fx]:
    env: dict[str, Fx] = {}
    for name, a in arrays.items():
        t = q.input_types[name]
        env[name] = Fx(quantize_float(a, t, what=f"input {name!r}"), t)
    for node in q.graph.nodes:
        op = get_op(node.op)
        outs = op.run_fixed(
            node, [env[t] for t in node.inputs], q.precision[node.name], q.qparams[node.name]
        )
        env.update(zip(node.outputs, outs, strict=True))
    return env if keep_all else {t: env[t] for t in q.graph.outputs}


def _model_facts(q: QuantizedModel) -> tuple[int, int, bool]:
    """(multiply-accumulates per sample, rows per chunk, chunkable), kept on the model.

    They steer only speed (numba loading, chunking, threads), never the bits, so a
    stale value after someone edits the graph in place costs time at worst."""
    key = (id(q.graph), len(q.graph.nodes), id(q.qparams))
    cached = q.__dict__.get("_emulate_facts")
    if cached is not None and cached[0] == key:
        return cached[1]
    facts = (_macs_per_sample(q), _chunk_rows(q), _chunkable(q.graph))
    q.__dict__["_emulate_facts"] = (key, facts)
    return facts


def _macs_per_sample(q: QuantizedModel) -> int:
    """Rough multiply-accumulates per sample of the dense/conv layers (weights x positions)."""
    total = 0
    for node in q.graph.nodes:
        w = q.qparams.get(node.name, {}).get("weight")
        if w is None or node.op not in ("dense", "conv", "conv_transpose"):
            continue
        out_shape = q.graph.shapes.get(node.outputs[0], ())
        if node.op == "dense":
            positions = math.prod(out_shape[:-1]) if len(out_shape) > 1 else 1
            total += int(w.size) * positions
        else:
            total += int(w.size) * math.prod(out_shape[1:])
    return total


def _chunkable(graph: Graph) -> bool:
    """Every op works per sample, except a concat along the batch axis."""
    return not any(n.op == "concat" and n.attrs.get("axis", 1) == 0 for n in graph.nodes)


def _threads(n_parts: int, chunk_elems: int) -> int:
    env = os.environ.get("LIGHTSPEED_THREADS")
    if env:
        n = int(env)
    elif chunk_elems < THREAD_MIN_ELEMS:
        n = 1
    else:
        n = min(os.cpu_count() or 1, 8)
    return max(1, min(n, n_parts))


def _concat(parts: list[Fx]) -> Fx:
    ms = [p.m for p in parts]
    if any(m.dtype == object for m in ms):
        ms = [m.astype(object) for m in ms]
    return Fx(np.concatenate(ms, axis=0), parts[0].t)


def as_input_dict(graph: Graph, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        return dict(x)
    if len(graph.inputs) != 1:
        raise InputError(f"model has inputs {list(graph.inputs)}; pass a dict of arrays")
    return {next(iter(graph.inputs)): x}
