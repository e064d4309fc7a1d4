"""Small models and repositories for the serving tests (no torch needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

LAYERS = (16, 64, 32, 32, 5)


def mlp_weights(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (
            rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32),
            rng.normal(0, 0.1, b).astype(np.float32),
        )
        for a, b in itertools.pairwise(LAYERS)
    ]


def mlp_numpy(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The same MLP in float32 NumPy (reference for the served outputs)."""
    h = x.astype(np.float32)
    weights = mlp_weights(seed)
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    return h


def write_mlp_onnx(path: Path, seed: int = 0, batch_dim: str | int = "N") -> Path:
    """A 16->64->32->32->5 ReLU MLP as ONNX (input x [N,16] float32, output y [N,5])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "x"
    weights = mlp_weights(seed)
    for i, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "y" if i == len(weights) - 1 else f"h{i}"
        gemm_out = out if i == len(weights) - 1 else f"g{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [gemm_out]))
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [gemm_out], [out]))
        cur = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
