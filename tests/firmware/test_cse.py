"""Shared adder graphs: fewer adders, the same bits (netlist evaluation; RTL in test_rtl)."""

from __future__ import annotations

import numpy as np
import pytest

from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.estimate import estimate_design
from lightspeed.firmware.netlist import Netlist, evaluate
from lightspeed.firmware.verilog import build_design
from lightspeed.firmware.verilog.cse import share_subexpressions
from lightspeed.fixed import FixedType
from tests.firmware.models import quantized, random_vectors
from tests.firmware.test_netlist import run_netlist


def _adders(design) -> int:
    return sum(n.op == "add" for n in design.nl.nets)


@pytest.mark.parametrize("kind", ["mlp_auto", "mlp_w6", "conv2d"])
def test_sharing_saves_adders_and_keeps_every_bit(kind):
    q = quantized(kind)
    plain = build_design(q, FirmwareOptions(share_adders=False))
    shared = build_design(q, FirmwareOptions(share_adders=True))
    X = random_vectors(q, n=3000)
    a, b = run_netlist(q, plain, X), run_netlist(q, shared, X)
    for name in q.output_names:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(b[name], q.run(X)[name].m)
    assert _adders(shared) < _adders(plain)
    assert estimate_design(shared).lut < estimate_design(plain).lut


def test_pairs_shared_across_outputs_by_shift_and_sign():
    nl = Netlist()
    t = FixedType(8, 8, True)
    x = [nl.input("x", i, t) for i in range(3)]

    def sh(s, k):  # x * 2**k as a term
        return type(s)(s.net, s.frac - k)

    lists = [
        [(x[0], False), (sh(x[1], 2), False), (x[2], False)],  # x0 + 4 x1 + x2
        [(sh(x[0], 1), False), (sh(x[1], 3), False)],  # 2 (x0 + 4 x1)
        [(sh(x[0], 1), True), (sh(x[1], 3), True), (x[2], True)],  # -(2 x0 + 8 x1 + x2)
        [(x[0], False), (sh(x[1], 2), True)],  # x0 - 4 x1: another pair
    ]
    new, saved = share_subexpressions(nl, lists)
    assert saved >= 2  # x0 + 4 x1 built once, used three times
    sums = [nl.cast(nl.sum(terms), 0) for terms in new]  # on the integer grid
    for k, s in enumerate(sums):
        nl.add_output(f"y{k}", FixedType(16, 16, True), np.array([s]))
    vals = np.array([[3, -5, 7], [-128, 127, 1], [0, 1, -1]])
    got = evaluate(nl, {"x": vals})
    want = [
        vals[:, 0] + 4 * vals[:, 1] + vals[:, 2],
        2 * vals[:, 0] + 8 * vals[:, 1],
        -(2 * vals[:, 0] + 8 * vals[:, 1] + vals[:, 2]),
        vals[:, 0] - 4 * vals[:, 1],
    ]
    for k, w in enumerate(want):
        np.testing.assert_array_equal(np.asarray(got[f"y{k}"]).reshape(-1), w)
