"""The memoised weight set-up of the MAC (ops/mac.py) never outlives the weights it
was derived from."""

from __future__ import annotations

import numpy as np
import pytest

import lightspeed
from lightspeed.fixed import parse_type
from lightspeed.ops import mac as M


def test_model_parameters_are_read_only(mlp, rng):
    q = lightspeed.quantize(mlp, precision="auto", calibration=rng.normal(size=(256, 16)))
    w = next(iter(q.qparams.values()))["weight"]
    with pytest.raises(ValueError):
        w[0, 0] += 1


def test_new_weights_give_new_results(mlp, rng):
    """Assigning other weights (the only way to change them) is seen at once."""
    x = rng.normal(size=(32, 16))
    q = lightspeed.quantize(mlp, precision="auto", calibration=x)
    before = q.predict(x)
    np.testing.assert_array_equal(q.predict(x), before)  # second run: from the cache
    first = q.graph.nodes[0].name
    q.qparams[first] = {k: -v for k, v in q.qparams[first].items()}
    after = q.predict(x)
    ref = lightspeed.quantize(mlp, precision="auto", calibration=x)
    ref.qparams[first] = {k: -v.copy() for k, v in ref.qparams[first].items()}
    M._PREPARED.clear()
    np.testing.assert_array_equal(after, ref.predict(x))
    assert not np.array_equal(after, before)


def test_writeable_weights_are_not_cached():
    t = parse_type("ap_fixed<8,3>")
    acc = parse_type("ap_fixed<20,10,AP_TRN,AP_WRAP>")  # products land on its scale
    w = np.array([[3, -2], [1, 4]], np.int64)
    x = np.array([[5, 7]], np.int64)
    first = M.mac(x, t, w, t, None, None, acc)
    w[0, 0] = -3  # a plain array may change between calls
    second = M.mac(x, t, w, t, None, None, acc)
    np.testing.assert_array_equal(first, [[5 * 3 + 7 * 1, 5 * -2 + 7 * 4]])
    np.testing.assert_array_equal(second, [[5 * -3 + 7 * 1, 5 * -2 + 7 * 4]])
    assert all(entry[0]() is not w for entry in M._PREPARED.values())
