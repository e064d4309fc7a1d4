"""Small test models for the firmware tests, built directly in the IR and quantized."""

from __future__ import annotations

import numpy as np

import lightspeed
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.quantize import AutoOptions
from tests.conftest import make_cnn, make_mlp


def make_conv1d(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    nodes = [
        Node("conv1", "conv", ["x"], ["c1"], {"pads": [1, 1]},
             {"weight": rng.normal(0, 0.4, (4, 2, 3)), "bias": rng.normal(0, 0.1, 4)}),
        Node("relu1", "relu", ["c1"], ["r1"]),
        Node("pool1", "maxpool", ["r1"], ["p1"], {"kernel_shape": [2]}),
        Node("conv2", "conv", ["p1"], ["c2"], {"strides": [2]},
             {"weight": rng.normal(0, 0.4, (3, 4, 3)), "bias": rng.normal(0, 0.1, 3)}),
        Node("relu2", "relu", ["c2"], ["r2"]),
        Node("flat", "flatten", ["r2"], ["f"]),
        Node("fc", "dense", ["f"], ["y"], {}, {"weight": rng.normal(0, 0.4, (9, 3)), "bias": rng.normal(0, 0.1, 3)}),
    ]  # fmt: skip
    return infer_shapes(Graph("cnn1d", {"x": (2, 16)}, ["y"], nodes))


def make_conv2d(seed: int = 0) -> Graph:
    """Conv2D (3x3, stride 1, 'same' padding on one side) -> ReLU -> max-pool -> depthwise -> dense."""
    rng = np.random.default_rng(seed)
    nodes = [
        Node("conv1", "conv", ["x"], ["c1"], {"pads": [1, 1, 0, 0]},
             {"weight": rng.normal(0, 0.4, (3, 2, 3, 3)), "bias": rng.normal(0, 0.1, 3)}),
        Node("relu1", "relu", ["c1"], ["r1"]),
        Node("pool1", "maxpool", ["r1"], ["p1"], {"kernel_shape": [2, 2]}),
        Node("dw", "conv", ["p1"], ["c2"], {"group": 3},
             {"weight": rng.normal(0, 0.4, (3, 1, 2, 2)), "bias": rng.normal(0, 0.1, 3)}),
        Node("gap", "global_avgpool", ["c2"], ["g"]),
        Node("flat", "flatten", ["g"], ["f"]),
        Node("fc", "dense", ["f"], ["y"], {}, {"weight": rng.normal(0, 0.4, (3, 3)), "bias": rng.normal(0, 0.1, 3)}),
    ]  # fmt: skip
    return infer_shapes(Graph("cnn2d", {"x": (2, 6, 6)}, ["y"], nodes))


def make_lut_net(seed: int = 0) -> Graph:
    """Dense -> tanh (ROM) -> dense -> sigmoid (ROM) and a softmax head."""
    rng = np.random.default_rng(seed)
    nodes = [
        Node("fc0", "dense", ["x"], ["h0"], {}, {"weight": rng.normal(0, 0.6, (6, 6)), "bias": rng.normal(0, 0.2, 6)}),
        Node("tanh0", "tanh", ["h0"], ["a0"], {"table_size": 64, "table_range": [-4.0, 4.0]}),
        Node("fc1", "dense", ["a0"], ["h1"], {}, {"weight": rng.normal(0, 0.6, (6, 4)), "bias": rng.normal(0, 0.2, 4)}),
        Node("sig1", "sigmoid", ["h1"], ["a1"], {"table_size": 64, "table_range": [-8.0, 8.0]}),
        Node("fc2", "dense", ["a1"], ["h2"], {}, {"weight": rng.normal(0, 1.0, (4, 4)), "bias": rng.normal(0, 0.2, 4)}),
        Node("softmax", "softmax", ["h2"], ["y"], {"exp_table_size": 64, "inv_table_size": 64}),
    ]  # fmt: skip
    return infer_shapes(Graph("lutnet", {"x": (6,)}, ["y"], nodes))


def make_residual(seed: int = 0) -> Graph:
    """Skip connection (add across pipeline stages), leaky ReLU, clip, batchnorm, avgpool-free."""
    rng = np.random.default_rng(seed)
    nodes = [
        Node("fc0", "dense", ["x"], ["h0"], {}, {"weight": rng.normal(0, 0.5, (8, 8)), "bias": rng.normal(0, 0.1, 8)}),
        Node("lk", "leaky_relu", ["h0"], ["a0"], {"alpha": 0.1}),
        Node("fc1", "dense", ["a0"], ["h1"], {}, {"weight": rng.normal(0, 0.5, (8, 8)), "bias": np.zeros(8)}),
        Node("add", "add", ["h1", "x"], ["s"]),
        Node("bn", "batchnorm", ["s"], ["b"], {}, {"scale": rng.uniform(0.5, 1.5, 8), "shift": rng.normal(0, 0.1, 8)}),
        Node("clip", "clip", ["b"], ["c"], {"min": 0.0, "max": 6.0}),
        Node("fc2", "dense", ["c"], ["y"], {}, {"weight": rng.normal(0, 0.5, (8, 3)), "bias": rng.normal(0, 0.1, 3)}),
    ]  # fmt: skip
    return infer_shapes(Graph("resnet", {"x": (8,)}, ["y"], nodes))


def calib(g: Graph, n: int = 1000, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, scale, (n, *s)) for k, s in g.inputs.items()}


def random_vectors(q, n: int = 10_000, seed: int = 1) -> dict[str, np.ndarray]:
    """Half uniform over each input type's whole range (saturation, overflow), half typical."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in q.graph.inputs.items():
        t = q.input_types[name]
        wide = rng.uniform(t.min_value, t.max_value, (n - n // 2, *shape))
        typical = rng.normal(0, 1.5, (n // 2, *shape))
        out[name] = np.concatenate([wide, typical])
    return out


def quantized(kind: str):
    """The quantized test models by name (small sizes: each Verilator build stays short)."""
    if kind == "mlp_auto":
        g = make_mlp((16, 16, 8, 5))
        return lightspeed.quantize(g, "auto", calib(g))
    if kind == "mlp_fixed16":
        g = make_mlp((16, 16, 8, 5))
        return lightspeed.quantize(g, "ap_fixed<16,6>", calib(g))
    if kind == "mlp_w6":
        g = make_mlp((16, 16, 8, 5))
        return lightspeed.quantize(g, "auto", calib(g), options=AutoOptions(weight_bits=6))
    if kind == "conv1d":
        g = make_conv1d()
        return lightspeed.quantize(
            g, "auto", calib(g), options=AutoOptions(weight_bits=8, frac_bits=6)
        )
    if kind == "conv2d":
        g = make_conv2d()
        return lightspeed.quantize(
            g, "auto", calib(g), options=AutoOptions(weight_bits=8, frac_bits=6)
        )
    if kind == "lut":
        g = make_lut_net()
        return lightspeed.quantize(g, "auto", calib(g))
    if kind == "cnn_large":  # the shared 1x8x8 CNN fixture: avg-pool, batchnorm, depthwise
        g = make_cnn()
        return lightspeed.quantize(
            g, "auto", calib(g), options=AutoOptions(weight_bits=8, frac_bits=6)
        )
    if kind == "residual":
        g = make_residual()
        return lightspeed.quantize(
            g, "auto", calib(g), options=AutoOptions(weight_bits=8, frac_bits=8)
        )
    if kind == "modes":
        # every rounding and overflow mode, saturating accumulators that do overflow
        g = make_mlp((6, 6, 4, 3), seed=3)
        cfg = {"layers": {
            "fc0": {"accum": "ap_fixed<9,3,RND_CONV,SAT>", "result": "ap_fixed<8,3,RND_ZERO,SAT_SYM>"},
            "relu0": {"result": "ap_ufixed<6,2,RND_INF,SAT_ZERO>"},
            "fc1": {"accum": "ap_fixed<10,2,RND_MIN_INF,SAT_ZERO>", "result": "ap_fixed<7,2,TRN_ZERO,SAT>"},
            "relu1": {"result": "ap_fixed<6,3,RND,WRAP>"},
            "fc2": {"accum": "ap_fixed<8,2,RND,SAT_SYM>", "result": "ap_fixed<6,1,TRN,WRAP>"},
        }}  # fmt: skip
        return lightspeed.quantize(g, "ap_fixed<8,2,RND,SAT>", calib(g), config=cfg)
    raise KeyError(kind)


KINDS = (
    "mlp_auto",
    "mlp_fixed16",
    "mlp_w6",
    "conv1d",
    "conv2d",
    "cnn_large",
    "lut",
    "residual",
    "modes",
)
