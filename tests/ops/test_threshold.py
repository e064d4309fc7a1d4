"""multithreshold: fixed contract against a literal reference, float semantics, RTL and HLS."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import lightspeed
from lightspeed.fixed import FixedType, parse_type
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.ops import get_op
from lightspeed.ops.base import Fx
from tests.firmware.check import assert_firmware_exact


def _node(t, axis=0):
    return Node("mt", "multithreshold", ["x"], ["y"], {"axis": axis}, {"thresholds": np.asarray(t)})


def test_fixed_contract_matches_literal_reference():
    rng = np.random.default_rng(0)
    t_in = parse_type("ap_fixed<8,3>")
    thr = np.sort(rng.normal(0, 2, (3, 5)), axis=1)
    thr[1, 0] = 0.125  # on the grid: x >= t at equality
    thr[2, 4] = 100.0  # beyond the input range: never reached
    node = _node(thr)
    m = rng.integers(t_in.min_int, t_in.max_int + 1, (40, 3, 2))
    m[0, 1, 0] = 4  # 0.125
    prec = {"result": get_op("multithreshold").trained_precision(node, _ctx(t_in))["result"]}
    got = get_op("multithreshold").run_fixed(node, [Fx(m, t_in)], prec, {})[0].m
    for idx in np.ndindex(*m.shape):
        x = Fraction(int(m[idx]), 2**t_in.frac)
        want = sum(x >= Fraction(float(v)) for v in thr[idx[1]])
        assert got[idx] == want
    assert str(prec["result"]) == "ap_uint<3,TRN,SAT>" or prec["result"].width == 3


def _ctx(t_in):
    from lightspeed.ops.base import TrainedContext

    return TrainedContext([t_in], {})


def test_float_semantics_count_per_channel_last_axis():
    node = _node([[0.0, 1.0], [-1.0, 0.5]], axis=1)
    x = np.array([[[0.0, 0.0], [1.0, 0.6]]])
    np.testing.assert_array_equal(
        get_op("multithreshold").run_float(node, [x])[0], [[[1, 1], [2, 2]]]
    )


def _fw_model():
    rng = np.random.default_rng(0)
    nodes = [
        Node("fc", "dense", ["x"], ["h"], {}, {"weight": rng.normal(0, 0.8, (6, 4)), "bias": rng.normal(0, 0.1, 4)}),
        Node("mt", "multithreshold", ["h"], ["y"], {"axis": 0}, {"thresholds": np.sort(rng.normal(0, 1, (4, 7)), axis=1)}),
    ]  # fmt: skip
    g = infer_shapes(Graph("mt", {"x": (6,)}, ["y"], nodes))
    return lightspeed.quantize(g, "auto", np.random.default_rng(2).normal(0, 1, (500, 6)))


@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_firmware_bit_exact(target, tmp_path):

    q = _fw_model()
    assert isinstance(q.precision["mt"]["result"], FixedType)
    from tests.firmware.models import random_vectors

    X = random_vectors(q, n=2000)
    assert_firmware_exact(q, tmp_path, target, X=X)
    assert len(np.unique(np.asarray(q.predict(X["x"])))) == 8  # every count 0..7 occurs
