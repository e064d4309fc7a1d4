"""Yosys synthesis reports and the analytic estimate (tiny designs only; whole models are benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest

import lightspeed
from lightspeed import firmware
from lightspeed.errors import ToolMissingError
from lightspeed.ir import Graph, Node, infer_shapes


def _missing() -> str | None:
    try:
        from lightspeed.firmware.tools import find_yosys

        find_yosys()
    except ToolMissingError as exc:
        return str(exc)
    return None


def tiny(seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (4, 3))
    g = infer_shapes(Graph("tiny", {"x": (4,)}, ["y"], [
        Node("fc", "dense", ["x"], ["h"], {}, {"weight": w, "bias": rng.normal(0, 0.1, 3)}),
        Node("relu", "relu", ["h"], ["y"]),
    ]))  # fmt: skip
    return lightspeed.quantize(g, "ap_fixed<12,4>")


def test_classify_cells():
    from lightspeed.firmware.synth import classify

    c = classify(
        {
            "LUT2": 3,
            "LUT6": 4,
            "FDRE": 10,
            "DSP48E2": 2,
            "CARRY8": 5,
            "RAMB18E2": 2,
            "SRL16E": 1,
            "MUXF7": 2,
            "INV": 1,
        }
    )
    assert (c["lut"], c["ff"], c["dsp"], c["carry"], c["bram"], c["srl"], c["muxf"]) == (
        7,
        10,
        2,
        5,
        1.0,
        1,
        2,
    )


@pytest.mark.skipif(_missing() is not None, reason=f"{_missing()}")
def test_yosys_counts_dsps_and_registers(tmp_path):
    q = tiny()
    fw = firmware.generate(q, tmp_path / "fw", multipliers="dsp")
    from lightspeed.firmware.verilog import build_design

    d = build_design(q, firmware.FirmwareOptions(multipliers="dsp"))
    mults = [n for n in d.nl.nets if n.op == "mulc"]
    wide = sum(1 for n in mults if n.width >= 9)  # Yosys leaves products under 9 bits in LUTs
    reg_bits = sum(n.width for n in d.nl.nets if n.op == "reg") + d.latency
    rep = firmware.synthesize(fw, part="xcvu9p", timeout=600, use_cache=False)
    assert wide <= rep.dsp <= len(mults)  # at most one DSP48E2 per non-trivial constant product
    assert 0 < rep.ff <= reg_bits  # Yosys may drop constant register bits, never add any
    assert rep.lut > 0 and rep.latency_cycles == fw.latency
    assert rep.utilisation["dsp"] == pytest.approx(100 * rep.dsp / 6840)
    again = firmware.synthesize(fw, part="xcvu9p")
    assert again.cached and again.lut == rep.lut


@pytest.mark.skipif(_missing() is not None, reason=f"{_missing()}")
def test_yosys_timeout_is_a_clear_error(tmp_path):
    from lightspeed.firmware.synth import SynthesisError

    fw = firmware.generate(tiny(1), tmp_path / "fw")
    with pytest.raises(SynthesisError, match="--timeout"):
        firmware.synthesize(fw, timeout=0.5, use_cache=False)


def test_estimate_counts_follow_the_netlist():
    q = tiny()
    dsp = firmware.estimate(q, multipliers="dsp")
    lut = firmware.estimate(q, multipliers="lut")
    assert lut.dsp == 0 and dsp.dsp > 0
    assert lut.lut > dsp.lut
    assert dsp.ff > 0 and dsp.latency >= 1
