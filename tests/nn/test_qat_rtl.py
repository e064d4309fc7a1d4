"""QAT model (PyTorch eval) == emulator == Verilator simulation of the generated Verilog."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")

from torch import nn  # noqa: E402

import lightspeed.nn as lnn  # noqa: E402
from lightspeed.errors import ToolMissingError  # noqa: E402


def _rtl_missing() -> str | None:
    try:
        from lightspeed.firmware.tools import find_cxx, find_make, find_verilator

        find_verilator()
        find_cxx()
        find_make()
    except ToolMissingError as exc:
        return str(exc)
    return None


@pytest.mark.skipif(_rtl_missing() is not None, reason=str(_rtl_missing()))
def test_qat_pytorch_emulator_rtl_agree(tmp_path):
    from lightspeed import firmware

    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32) * 2
    model = nn.Sequential(
        lnn.QInput("ap_fixed<8,3,RND,SAT>"),
        lnn.QLinear(16, 8, weight="ap_fixed<5,1,RND,SAT>", batchnorm=True),
        lnn.QReLU("ap_ufixed<6,2,RND,SAT>"),
        lnn.QLinear(8, 3, weight="ap_fixed<5,1,RND,SAT>", output="ap_fixed<9,3,RND_CONV,SAT>"),
    )
    model.train()
    model(torch.as_tensor(x))  # move the fused BatchNorm's running statistics
    model.eval()
    q = lnn.to_quantized(model, (16,))
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(q.predict(x.astype(np.float64)), want)
    firmware.generate(q, tmp_path / "fw", target="verilog")
    y_rtl = firmware.simulate(tmp_path / "fw", x.astype(np.float64))[0]
    np.testing.assert_array_equal(np.asarray(y_rtl).reshape(want.shape), want)
