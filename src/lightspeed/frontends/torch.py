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


def _written_out_attention(module: Any) -> Any:
    """A copy of ``module`` whose ``nn.MultiheadAttention`` layers are written out as
    projections, ``softmax(q @ k^T * scale) @ v`` per head and the output projection
    (the same weights): torch exports those as MatMul/Softmax/Reshape/Transpose, which import
    through the ``matmul`` and ``softmax`` ops. ``module`` itself is left as it is."""
    import copy

    import torch

    if not any(isinstance(m, torch.nn.MultiheadAttention) for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for path, sub in list(module.named_modules()):
        if isinstance(sub, torch.nn.MultiheadAttention):
            _check_attention(path or type(module).__name__, sub)
            parent, _, leaf = path.rpartition(".")
            owner = module.get_submodule(parent) if parent else module
            if not path:
                return _explicit_attention(torch)(sub)
            setattr(owner, leaf, _explicit_attention(torch)(sub))
    return module


def _check_attention(path: str, m: Any) -> None:
    from lightspeed.errors import UnsupportedOpError

    why = None
    if not m.batch_first:
        why = "batch_first=False (lightspeed keeps the batch axis first: use batch_first=True)"
    elif not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        why = "kdim/vdim different from embed_dim, add_bias_kv or add_zero_attn"
    if why:
        raise UnsupportedOpError(f"layer {path!r} (MultiheadAttention): {why} is not supported")


def _explicit_attention(torch: Any) -> Any:
    class ExplicitAttention(torch.nn.Module):
        """nn.MultiheadAttention (batch_first, no masks) written out with the same weights."""

        def __init__(self, m: Any) -> None:
            super().__init__()
            self.heads, self.dim = m.num_heads, m.embed_dim
            # read by TransformerEncoderLayer
            self.batch_first, self._qkv_same_embed_dim = True, True
            self.in_proj_weight, self.in_proj_bias = m.in_proj_weight, m.in_proj_bias
            self.out_proj = m.out_proj

        def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                    attn_mask=None, average_attn_weights=True, is_causal=False):  # fmt: skip
            if key_padding_mask is not None or attn_mask is not None or is_causal:
                raise ModelError(
                    "MultiheadAttention with a mask (key_padding_mask, attn_mask, is_causal) is "
                    "not supported: lightspeed computes attention over every key"
                )
            f = torch.nn.functional
            h, d = self.heads, self.dim
            hd = d // h
            ws = self.in_proj_weight.chunk(3)
            bs = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3

            def heads(t, w, b):  # (B, N, D) -> (B, h, N, hd)
                return f.linear(t, w, b).reshape(t.shape[0], t.shape[1], h, hd).transpose(1, 2)

            q, k, v = (
                heads(query, ws[0], bs[0]),
                heads(key, ws[1], bs[1]),
                heads(value, ws[2], bs[2]),
            )
            a = torch.softmax((q @ k.transpose(-2, -1)) * hd**-0.5, dim=-1)
            o = (a @ v).transpose(1, 2).reshape(query.shape[0], query.shape[1], d)
            weights = (a.mean(dim=1) if average_attn_weights else a) if need_weights else None
            return self.out_proj(o), weights

    return ExplicitAttention


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
    module = _written_out_attention(module.eval())
    # batch 2 so that the exporter cannot specialise the batch axis to 1
    args = tuple(torch.zeros((2, *s), dtype=torch.float32) for s in shapes)
    names = names or _input_names(module, len(shapes))
    try:
        with torch.no_grad(), _exportable(torch):
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
