"""HLS C simulation (g++ against the ap_types headers) is bit-exact with the emulator."""

from __future__ import annotations

import pytest

from lightspeed import firmware
from lightspeed.errors import ToolMissingError
from tests.firmware.models import quantized, random_vectors


def _missing() -> str | None:
    try:
        from lightspeed.firmware.tools import find_ap_types, find_cxx

        find_ap_types()
        find_cxx()
    except ToolMissingError as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"{_missing()}")


@pytest.mark.parametrize(
    "kind", ["mlp_auto", "mlp_fixed16", "mlp_w6", "conv1d", "conv2d", "lut", "residual", "modes"]
)
def test_hls_csim_bit_exact(kind, tmp_path):
    q = quantized(kind)
    fw = firmware.generate(q, tmp_path / "fw", target="hls")
    for f in ("hls/build.tcl", "hls/tb/tb.cpp", "hls/firmware/lightspeed_top.cpp", "README.md"):
        assert (fw.path / f).is_file()
    text = fw.read("cpp")
    assert "#pragma HLS PIPELINE II=1" in text and "#pragma HLS UNROLL" in text
    r = firmware.check(fw, random_vectors(q, n=10_000), q=q)
    assert r["vectors"] == 10_000
    assert r["exact"], r["mismatches"]
    assert r["latency"] is None  # C simulation has no clock


def test_ap_types_option_is_checked(tmp_path):
    from lightspeed.firmware.tools import find_ap_types

    with pytest.raises(ToolMissingError, match=r"no ap_fixed\.h"):
        find_ap_types(tmp_path)
