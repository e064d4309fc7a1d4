"""Model importers: ONNX (+ QONNX ``Quant``), PyTorch; all produce a float IR graph.

``load_model(source, input_shape=None)`` dispatches on the source:

* a path to an ``.onnx`` file, or an ``onnx.ModelProto``: :func:`import_onnx`
  (QONNX ``Quant``/``BipolarQuant`` nodes are understood);
* a Keras file (``.keras``, ``.h5``, ``arch.json`` + ``weights``) or a live
  ``keras.Model``: :func:`import_keras` (QKeras layers included); HGQ2 models
  (live or ``.keras``) go to :func:`lightspeed.frontends.keras_hgq.import_hgq`;
* a ``torch.nn.Module``: :func:`import_torch` (needs ``input_shape``).

``input_shape`` never includes the batch axis: a tuple for one input, a dict
``{input: shape}``, or the CLI string form ``"3,32,32"`` / ``"x:16;y:3,8"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightspeed.errors import ModelError
from lightspeed.ir import Graph


def load_model(source: Any, input_shape: Any = None, weights: Any = None) -> Graph:
    """Load a model (ONNX/QONNX, Keras/QKeras, torch ``nn.Module``, trees) as a float IR graph.

    ``weights`` is the weights file of a Keras JSON architecture (``arch.json``).
    """
    from lightspeed.frontends.keras import is_keras_source
    from lightspeed.frontends.torch import is_torch_module
    from lightspeed.frontends.trees import is_tree_model

    if weights is not None and not is_keras_source(source):
        raise ModelError(
            "a separate weights file only goes with a Keras JSON architecture (arch.json); "
            "other formats carry their weights"
        )
    from lightspeed.frontends.keras_hgq import is_hgq_source

    if is_hgq_source(source):  # HGQ2 models: read through HGQ2's own quantizer API
        from lightspeed.frontends.keras_hgq import import_hgq

        if weights is not None:
            raise ModelError("an HGQ2 .keras model holds its own weights; drop --weights")
        return import_hgq(source)
    if is_keras_source(source):
        from lightspeed.frontends.keras import import_keras

        return import_keras(source, weights=weights, input_shape=input_shape)
    if is_tree_model(source):  # sklearn/XGBoost/LightGBM objects, XGBoost .json files
        from lightspeed.frontends.trees import load_trees

        width = input_shape[0] if isinstance(input_shape, tuple) and len(input_shape) == 1 else None
        return load_trees(source, n_features=width)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ModelError(f"model file {str(path)!r} does not exist; check the path")
        hint = _FOREIGN.get(path.suffix.lower())
        if hint:
            raise ModelError(f"{str(path)!r} is not an ONNX model: {hint}")
        from lightspeed.frontends.onnx import import_onnx

        return import_onnx(path, input_shape)
    if is_torch_module(source):
        from lightspeed.frontends.torch import import_torch

        return import_torch(source, input_shape)
    try:
        import onnx

        if isinstance(source, onnx.ModelProto):
            from lightspeed.frontends.onnx import import_onnx

            return import_onnx(source, input_shape)
    except ImportError:  # pragma: no cover - onnx is a core dependency
        pass
    raise ModelError(
        f"cannot load a model from a {type(source).__name__}; pass an .onnx path, an "
        "onnx.ModelProto or a torch.nn.Module"
    )


_TORCH_HINT = "load the nn.Module in Python and pass it (lightspeed.load(module, input_shape=...)) or export it with torch.onnx.export"
_FOREIGN = {
    ".pt": _TORCH_HINT,
    ".pth": _TORCH_HINT,
    ".ckpt": _TORCH_HINT,
    ".pb": "convert TensorFlow models to ONNX with tf2onnx first",
    ".json": "JSON models are XGBoost boosters or Keras architectures (with --weights); this is neither",
}


def __getattr__(name: str) -> Any:  # lazy re-exports keep `import lightspeed.frontends` light
    if name == "import_onnx":
        from lightspeed.frontends.onnx import import_onnx

        return import_onnx
    if name == "import_keras":
        from lightspeed.frontends.keras import import_keras

        return import_keras
    if name == "import_torch":
        from lightspeed.frontends.torch import import_torch

        return import_torch
    if name == "export_qonnx":
        from lightspeed.frontends.qonnx_export import export_qonnx

        return export_qonnx
    raise AttributeError(name)


__all__ = ["export_qonnx", "import_keras", "import_onnx", "import_torch", "load_model"]
