"""Shared fixtures: small float graphs built directly in the IR."""

from __future__ import annotations

import numpy as np
import pytest

from lightspeed.ir import Graph, Node, infer_shapes


def make_mlp(sizes=(16, 64, 32, 32, 5), seed=0, softmax=False, act="relu") -> Graph:
    rng = np.random.default_rng(seed)
    nodes, prev = [], "x"
    for i in range(len(sizes) - 1):
        w = rng.normal(0, 1 / np.sqrt(sizes[i]), (sizes[i], sizes[i + 1]))
        b = rng.normal(0, 0.1, sizes[i + 1])
        nodes.append(Node(f"fc{i}", "dense", [prev], [f"h{i}"], {}, {"weight": w, "bias": b}))
        prev = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(Node(f"{act}{i}", act, [prev], [f"a{i}"]))
            prev = f"a{i}"
    if softmax:
        nodes.append(Node("softmax", "softmax", [prev], ["y"]))
        prev = "y"
    return infer_shapes(Graph("mlp", {"x": (sizes[0],)}, [prev], nodes))


def make_cnn(seed=0) -> Graph:
    rng = np.random.default_rng(seed)
    nodes = [
        Node("conv1", "conv", ["x"], ["c1"], {"pads": [1, 1, 1, 1]},
             {"weight": rng.normal(0, 0.3, (4, 1, 3, 3)), "bias": rng.normal(0, 0.1, 4)}),
        Node("relu1", "relu", ["c1"], ["r1"]),
        Node("pool1", "maxpool", ["r1"], ["p1"], {"kernel_shape": [2, 2]}),
        Node("dw", "conv", ["p1"], ["c2"], {"group": 4},
             {"weight": rng.normal(0, 0.3, (4, 1, 3, 3)), "bias": rng.normal(0, 0.1, 4)}),
        Node("bn", "batchnorm", ["c2"], ["b2"], {},
             {"scale": rng.uniform(0.5, 1.5, 4), "shift": rng.normal(0, 0.1, 4)}),
        Node("relu2", "relu", ["b2"], ["r2"]),
        Node("gap", "avgpool", ["r2"], ["g"], {"kernel_shape": [2, 2]}),
        Node("flat", "flatten", ["g"], ["f"]),
        Node("fc", "dense", ["f"], ["y"], {},
             {"weight": rng.normal(0, 0.3, (4, 3)), "bias": rng.normal(0, 0.1, 3)}),
    ]  # fmt: skip
    return infer_shapes(Graph("cnn", {"x": (1, 8, 8)}, ["y"], nodes))


@pytest.fixture
def mlp() -> Graph:
    return make_mlp()


@pytest.fixture
def cnn() -> Graph:
    return make_cnn()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
