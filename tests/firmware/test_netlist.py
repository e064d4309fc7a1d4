"""The lowered netlist, interpreted in NumPy, is bit-exact with the emulator (no tools needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.netlist import Netlist, evaluate, signed_width
from lightspeed.firmware.verilog import build_design
from lightspeed.firmware.verilog.arith import csd
from lightspeed.fixed import QUANT_MODES, FixedType, quantize_float, requantize
from tests.firmware.models import KINDS, quantized, random_vectors


def run_netlist(q, design, X):
    ins = {
        d["port"]: quantize_float(X[name], q.input_types[name]) for name, d in design.inputs.items()
    }
    out = evaluate(design.nl, ins)
    return {name: out[d["port"]] for name, d in design.outputs.items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mult", ["auto", "dsp", "lut"])
def test_netlist_matches_emulator(kind, mult):
    q = quantized(kind)
    design = build_design(q, FirmwareOptions(multipliers=mult))
    X = random_vectors(q, n=3000)
    got = run_netlist(q, design, X)
    ref = q.run(X)
    for name in q.output_names:
        np.testing.assert_array_equal(got[name], ref[name].m)


@pytest.mark.parametrize("period", [1.0, 3.0, 10.0, 100.0])
def test_pipeline_depth_follows_clock(period):
    q = quantized("mlp_auto")
    d = build_design(q, FirmwareOptions(clock_period=period))
    # at least one register per layer with arithmetic (3 dense layers)
    assert d.latency >= 3
    if period >= 100:
        assert d.latency == 3
    fast = build_design(q, FirmwareOptions(clock_period=1.0))
    assert fast.latency >= d.latency


def test_zero_and_power_of_two_weights_need_no_multiplier():
    import lightspeed
    from lightspeed.ir import Graph, Node, infer_shapes

    w = np.array([[0.5, 0.0, -0.25], [2.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    g = infer_shapes(
        Graph("p2", {"x": (3,)}, ["y"], [Node("fc", "dense", ["x"], ["y"], {}, {"weight": w})])
    )
    q = lightspeed.quantize(g, "ap_fixed<12,4>")
    d = build_design(q, FirmwareOptions(multipliers="dsp"))
    assert not [n for n in d.nl.nets if n.op in ("mulc", "mul")]
    X = {"x": np.random.default_rng(0).uniform(-8, 8, (500, 3))}
    np.testing.assert_array_equal(run_netlist(q, d, X)["y"], q.run(X)["y"].m)


def test_csd_digits():
    for c in range(-300, 300):
        digits = csd(c)
        assert sum(d << k for k, d in digits) == c
        # non-adjacent form: no two neighbouring non-zero digits
        ks = [k for k, _ in digits]
        assert all(b - a >= 2 for a, b in itertools.pairwise(ks))


@pytest.mark.parametrize("mode", QUANT_MODES)
@pytest.mark.parametrize("ovf", ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"])
@pytest.mark.parametrize("signed", [True, False])
def test_cast_matches_requantize(mode, ovf, signed):
    t = FixedType(5, 2, signed, mode, ovf)
    nl = Netlist()
    src = FixedType(10, 6)
    x = nl.input("in_x", 0, src)
    y = nl.cast(x, t.frac, t.rounding, t)
    nl.add_output("out_y", t, np.array([y], dtype=object))
    nl.finish()
    m = np.arange(src.min_int, src.max_int + 1)
    got = evaluate(nl, {"in_x": m[:, None]})["out_y"][:, 0]
    np.testing.assert_array_equal(got, requantize(m, src.frac, t))
    assert signed_width(nl.net(y).lo, nl.net(y).hi) <= t.width + 1
