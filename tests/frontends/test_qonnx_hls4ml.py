"""hls4ml reads lightspeed's QONNX export and its C simulation gives our bits (peer, slow)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import lightspeed
from lightspeed.frontends.qonnx_export import export_qonnx
from lightspeed.ops import AutoOptions

pytestmark = [pytest.mark.slow, pytest.mark.peer]


def test_hls4ml_reads_export_bit_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    hls4ml = pytest.importorskip("hls4ml")
    pytest.importorskip("qonnx")
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to compile hls4ml's C simulation")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5)
    ).eval()
    g = lightspeed.load(net, input_shape=(16,))
    x = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    # QONNX-expressible modes (RND_CONV, SAT) and exact accumulators (auto)
    opts = AutoOptions(weight_bits=8, frac_bits=8, rounding="RND_CONV", overflow="SAT")
    q = lightspeed.quantize(g, precision="auto", calibration=x, options=opts)
    path = export_qonnx(q, tmp_path / "m.onnx")

    m = cleanup_model(ModelWrapper(str(path)))
    m = cleanup_model(m.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul()))
    cfg = hls4ml.utils.config.config_from_onnx_model(
        m, granularity="name", backend="Vitis", default_precision="fixed<32,16>"
    )
    # hls4ml's input type is a user setting: give it ours (else it rounds twice)
    cfg["LayerName"]["global_in"]["Precision"]["result"] = str(q.input_types["input"]).replace(
        "ap_", ""
    )
    hm = hls4ml.converters.convert_from_onnx_model(
        m, output_dir=str(tmp_path / "prj"), io_type="io_parallel", backend="Vitis", hls_config=cfg
    )
    hm.compile()
    np.testing.assert_array_equal(hm.predict(x).astype(np.float64), q.predict(x))
