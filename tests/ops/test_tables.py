"""Lookup-table activations: contract details and documented accuracy."""

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import ConfigError
from lightspeed.ir import Graph, Node, infer_shapes


def _graph(op, n=8, **attrs):
    return infer_shapes(Graph(op, {"x": (n,)}, ["y"], [Node("act", op, ["x"], ["y"], attrs)]))


@pytest.mark.parametrize("op, bound", [("sigmoid", 0.0025), ("tanh", 0.0045)])
def test_unary_table_accuracy(op, bound, rng):
    """Default 1024-entry tables: |error| <= step*max_slope/2 + input lsb/2 + entry lsb."""
    x = rng.uniform(-4, 4, (2000, 8))
    q = lightspeed.quantize(_graph(op), "auto", calibration=x)
    err = np.abs(q.predict(x) - q.predict_float(x)).max()
    assert err < bound


def test_unary_table_saturates_outside_range():
    cfg = {"inputs": {"x": "ap_fixed<16,8>"}}
    q = lightspeed.quantize(
        _graph("sigmoid", 2), "auto", calibration=np.array([[-1.0, 1.0]]), config=cfg
    )
    y = q.predict(np.array([[-50.0, 50.0]]))
    assert y[0, 0] < 1e-3 and y[0, 1] > 0.999


def test_softmax_accuracy_and_normalisation(rng):
    x = rng.normal(0, 2, (2000, 5))
    g = _graph("softmax", 5)
    q = lightspeed.quantize(g, "auto", calibration=x)
    y = q.predict(x)
    assert np.abs(y - q.predict_float(x)).max() < 0.01
    assert np.abs(y.sum(axis=1) - 1).max() < 0.02
    assert np.mean(y.argmax(1) == x.argmax(1)) > 0.99


def test_table_config_must_be_power_of_two_step():
    g = _graph("sigmoid", 2)
    with pytest.raises(ConfigError, match="power of two"):
        lightspeed.quantize(
            g, "ap_fixed<16,6>", config={"layers": {"act": {"table_size": 1000}}}
        ).predict(np.zeros((1, 2)))


def test_table_size_config_changes_table():
    g = _graph("tanh", 2)
    q = lightspeed.quantize(g, "ap_fixed<16,6>", config={"layers": {"act": {"table_size": 256}}})
    assert q.qparams["act"]["table"].shape == (256,)
