"""PyTorch frontend: export an ``nn.Module`` to ONNX in memory, then import it.

torch is an optional extra and is imported lazily. The model is exported in
``eval()`` mode with a dynamic batch axis through the TorchScript-based
exporter (``dynamo=False``), which handles the small feed-forward models used
here reliably and without extra dependencies.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

from lightspeed.errors import ModelError, ShapeError, ToolMissingError
from lightspeed.frontends.onnx import split_input_shape
from lightspeed.ir import Graph

TORCH_INSTALL = "pip install torch==2.13.0"


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ToolMissingError(
            f"PyTorch is needed to import an nn.Module: {TORCH_INSTALL} "
            "(or export the model to ONNX yourself and pass the .onnx file)"
        ) from exc
    return torch


def is_torch_module(obj: Any) -> bool:
    """True for an ``nn.Module`` (checked without importing torch when it is not loaded)."""
    import sys

    if "torch" not in sys.modules:
        return False
    return isinstance(obj, sys.modules["torch"].nn.Module)


def _shapes(input_shape: Any) -> tuple[list[str] | None, list[tuple[int, ...]]]:
    """(input names if the user named them, shapes); a PyTorch model needs them."""
    if input_shape is None:
        raise ShapeError(
            "a PyTorch model needs the example input shape (without the batch axis): "
            "load_model(module, input_shape=(16,)) or --input-shape 16"
        )
    return split_input_shape(input_shape)


def _input_names(module: Any, n: int) -> list[str]:
    if n == 1:
        return ["input"]
    import inspect

    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return params[:n] if len(params) >= n else [f"input{i}" for i in range(n)]


def _refuse_known_layers(module: Any, error: str) -> None:
    """An export failure inside a layer lightspeed does not support names that layer instead."""
    import torch

    from lightspeed.errors import UnsupportedOpError

    layers = (
        torch.nn.MultiheadAttention, torch.nn.TransformerEncoderLayer,
        torch.nn.TransformerDecoderLayer, torch.nn.Transformer,
    )  # fmt: skip
    for path, sub in module.named_modules():
        if isinstance(sub, layers):
            raise UnsupportedOpError(
                f"layer {path or type(module).__name__!r} ({type(sub).__name__}) is not supported "
                f"yet (the ONNX export stopped with: {error}); write the attention out instead "
                "(Linear projections, softmax(q @ k.transpose(-2, -1) * scale) @ v), which "
                "imports through the matmul op, or serve the model with the onnxruntime backend"
            )


def _rms_norm_symbolic(g: Any, x: Any, shape: Any, weight: Any, eps: Any) -> Any:
    """``aten::rms_norm`` for the TorchScript exporter (it has none before opset 23): the float
    form ``x / sqrt(mean(x*x) + eps) * weight`` that the import fuses into ``rmsnorm``."""
    import torch
    from torch.onnx import symbolic_helper as sh

    dims = sh._maybe_get_const(shape, "is")
    if isinstance(dims, (list, tuple)) and len(dims) != 1:
        raise ModelError(
            f"RMSNorm over {len(dims)} axes: lightspeed normalizes over the last axis only"
        )
    e = sh._maybe_get_const(eps, "f")
    e = float(torch.finfo(torch.float32).eps) if e is None or sh._is_none(eps) else float(e)
    ms = g.op("ReduceMean", g.op("Mul", x, x), axes_i=[-1], keepdims_i=1)
    den = g.op("Sqrt", g.op("Add", ms, g.op("Constant", value_t=torch.tensor(e))))
    z = g.op("Div", x, den)
    return z if sh._is_none(weight) else g.op("Mul", z, weight)


@contextlib.contextmanager
def _exportable(torch: Any) -> Iterator[None]:
    """Export-time settings: nn.MultiheadAttention's fused fast path (which has no ONNX form)
    off, so that it exports as MatMul/Softmax; RMSNorm through :func:`_rms_norm_symbolic`."""
    from torch.onnx import register_custom_op_symbolic

    register_custom_op_symbolic("aten::rms_norm", _rms_norm_symbolic, 9)
    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _verbose() -> bool:
    return os.environ.get("LIGHTSPEED_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def _quiet_fds() -> Iterator[io.StringIO]:
    """Send fds 1 and 2 to a temp file (torch's C++ side prints there); the text lands
    in the yielded buffer on exit."""
    captured = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            captured.write(tmp.read().decode(errors="replace"))


def export_onnx_bytes(module: Any, input_shape: Any, opset: int = 17) -> bytes:
    """Export ``module`` to ONNX bytes with a dynamic batch axis."""
    torch = _torch()
    names, shapes = _shapes(input_shape)
    if any(not s or any(d <= 0 for d in s) for s in shapes):
        raise ShapeError(f"input shape {input_shape} must be positive dims without the batch axis")
    module = module.eval()
    # batch 2 so that the exporter cannot specialise the batch axis to 1
    args = tuple(torch.zeros((2, *s), dtype=torch.float32) for s in shapes)
    names = names or _input_names(module, len(shapes))
    try:
        with torch.no_grad():
            out = module(*args)
    except Exception as exc:
        raise ModelError(
            f"{type(module).__name__} does not run on inputs of shape "
            f"{[tuple(a.shape[1:]) for a in args]}: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
            "check input_shape (without the batch axis)"
        ) from None
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    outputs = ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    dyn = {n: {0: "batch"} for n in [*names, *outputs]}
    buf = io.BytesIO()
    error = None
    # the exporter prints a "Torch IR graph at exception" dump from C++: keep it for
    # LIGHTSPEED_VERBOSE=1 only
    with _quiet_fds() as captured:
        try:
            with warnings.catch_warnings(), torch.no_grad(), _exportable(torch):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, args, buf, input_names=names, output_names=outputs,
                    dynamic_axes=dyn, opset_version=opset, dynamo=False,
                )  # fmt: skip
        except Exception as exc:  # the exporter raises many types (RuntimeError, OnnxExporterError)
            error = str(exc).splitlines()[0] if str(exc) else repr(exc)
    if _verbose() and captured.getvalue():
        sys.stderr.write(captured.getvalue())
    if error is not None:
        _refuse_known_layers(module, error)
        hint = "" if _verbose() else " (LIGHTSPEED_VERBOSE=1 shows the exporter's output)"
        raise ModelError(
            f"torch.onnx.export failed for {type(module).__name__}: {error}; simplify the "
            f"forward pass (no data-dependent control flow) or export to ONNX yourself{hint}"
        )
    return buf.getvalue()


def import_torch(module: Any, input_shape: Any = None) -> Graph:
    """Import a PyTorch ``nn.Module`` (needs ``input_shape`` without the batch axis)."""
    import onnx

    from lightspeed.frontends.onnx import import_onnx

    model = onnx.load_from_string(export_onnx_bytes(module, input_shape))
    model.graph.name = type(module).__name__
    return import_onnx(model)
