"""Streaming convolutions (``io="stream"``): bit-exact in Verilator, area independent of the image."""

from __future__ import annotations

import numpy as np
import pytest

import lightspeed
from lightspeed import firmware
from lightspeed.errors import UnsupportedOpError
from lightspeed.firmware.verilog.stream import build_stream, estimate_stream, from_beats, to_beats
from lightspeed.ir import Graph, Node, infer_shapes
from lightspeed.quantize import AutoOptions
from tests.firmware.check import skip_without


def _cnn(shape=(2, 8, 8), seed: int = 0, pads=None, extra=()) -> Graph:
    """Two valid 3x3 convs with ReLU, a 2x2 max-pool, flatten, dense (the brief's small CNN)."""
    rng = np.random.default_rng(seed)
    c = shape[0]
    conv1 = {"pads": pads} if pads else {}
    grow = 2 if pads else 0
    hw = ((shape[1] - 4 + grow) // 2) * ((shape[2] - 4 + grow) // 2)
    nodes = [
        Node("conv1", "conv", ["x"], ["c1"], conv1,
             {"weight": rng.normal(0, 0.4, (4, c, 3, 3)), "bias": rng.normal(0, 0.1, 4)}),
        Node("relu1", "relu", ["c1"], ["r1"]),
        Node("conv2", "conv", ["r1"], ["c2"], {},
             {"weight": rng.normal(0, 0.4, (4, 4, 3, 3)), "bias": rng.normal(0, 0.1, 4)}),
        Node("relu2", "relu", ["c2"], ["r2"]),
        Node("pool", "maxpool", ["r2"], ["p"], {"kernel_shape": [2, 2]}),
        *extra,
        Node("flat", "flatten", ["p"], ["f"]),
        Node("fc", "dense", ["f"], ["y"], {},
             {"weight": rng.normal(0, 0.4, (4 * hw, 3)), "bias": rng.normal(0, 0.1, 3)}),
    ]  # fmt: skip
    return infer_shapes(Graph("scnn", {"x": shape}, ["y"], nodes))


def _mixed(seed: int = 1) -> Graph:
    """Batchnorm before any conv (a 1x1 stage), a strided depthwise conv, avg-pool, leaky ReLU,
    a conv whose output is the model's output (a pixel stream, no tail)."""
    rng = np.random.default_rng(seed)
    nodes = [
        Node("bn0", "batchnorm", ["x"], ["b0"], {},
             {"scale": rng.uniform(0.5, 1.5, 3), "shift": rng.normal(0, 0.1, 3)}),
        Node("dw", "conv", ["b0"], ["c1"], {"group": 3, "strides": [2, 1]},
             {"weight": rng.normal(0, 0.5, (3, 1, 3, 2)), "bias": rng.normal(0, 0.1, 3)}),
        Node("lk", "leaky_relu", ["c1"], ["a1"], {"alpha": 0.1}),
        Node("avg", "avgpool", ["a1"], ["p1"], {"kernel_shape": [2, 2], "strides": [1, 2]}),
        Node("pw", "conv", ["p1"], ["y"], {},
             {"weight": rng.normal(0, 0.5, (2, 3, 1, 1)), "bias": rng.normal(0, 0.1, 2)}),
    ]  # fmt: skip
    return infer_shapes(Graph("mixed", {"x": (3, 9, 10)}, ["y"], nodes))


def _conv1d(seed: int = 2) -> Graph:
    rng = np.random.default_rng(seed)
    nodes = [
        Node("conv1", "conv", ["x"], ["c1"], {},
             {"weight": rng.normal(0, 0.4, (4, 2, 3)), "bias": rng.normal(0, 0.1, 4)}),
        Node("relu1", "relu", ["c1"], ["r1"]),
        Node("pool1", "maxpool", ["r1"], ["p1"], {"kernel_shape": [2]}),
        Node("conv2", "conv", ["p1"], ["c2"], {"strides": [2]},
             {"weight": rng.normal(0, 0.4, (3, 4, 3)), "bias": rng.normal(0, 0.1, 3)}),
        Node("flat", "flatten", ["c2"], ["f"]),
        Node("fc", "dense", ["f"], ["y"], {},
             {"weight": rng.normal(0, 0.4, (12, 2)), "bias": rng.normal(0, 0.1, 2)}),
    ]  # fmt: skip
    return infer_shapes(Graph("cnn1d", {"x": (2, 22)}, ["y"], nodes))


def _quantize(g: Graph, precision: str = "auto"):
    rng = np.random.default_rng(0)
    cal = {k: rng.normal(0, 1, (400, *s)) for k, s in g.inputs.items()}
    return lightspeed.quantize(g, precision, cal, options=AutoOptions(weight_bits=8, frac_bits=6))


def _images(q, n: int, seed: int = 3) -> np.ndarray:
    (shape,) = q.graph.inputs.values()
    (t,) = q.input_types.values()
    rng = np.random.default_rng(seed)
    wide = rng.uniform(t.min_value, t.max_value, (n // 2, *shape))  # saturation, overflow
    return np.concatenate([wide, rng.normal(0, 1.5, (n - n // 2, *shape))])


@pytest.mark.parametrize(
    "precision, streamed_dense",
    [("auto", True), ("ap_fixed<8,3>", True), ("ap_fixed<8,3,RND,SAT>", False)],
)
def test_stream_cnn_bit_exact(tmp_path, precision, streamed_dense):
    """10x10x2 input, two 3x3 convs, pool, dense: every bit, one image per 100 beats.

    The dense accumulates pixel by pixel where the order of the sum cannot matter: auto
    precision (the accumulator never overflows) and WRAP accumulators; a saturating one
    that may overflow needs the contract's input order: the dense then runs in parallel
    on the collected feature map."""
    skip_without("find_verilator", "find_make", "find_cxx")
    q = _quantize(_cnn((2, 10, 10)), precision)  # 3x3 pixels reach the dense
    fw = firmware.generate(q, tmp_path / "fw", io="stream")
    dense = fw.manifest["stream"]["dense"]
    assert (dense is not None) == streamed_dense
    r = firmware.check(fw, _images(q, 60), q=q)
    assert r["exact"], r["mismatches"]
    assert r["ii"] == 100  # back-to-back images: one per height x width beats
    assert r["latency"] == 99 + fw.latency  # last beat of the first image, then the pipeline
    # gaps in the input (valid low every 3rd cycle) change the timing, never the bits
    r = firmware.check(fw, _images(q, 20, seed=4), q=q, stall=3)
    assert r["exact"], r["mismatches"]
    assert r["ii"] == 150


def test_small_feature_maps_keep_the_dense_parallel():
    """2x2 pixels into the dense: the parallel dense on the collected map is cheaper."""
    sd = build_stream(_quantize(_cnn((2, 8, 8))))
    assert sd.dense is None and sd.tail is not None and sd.tail_in == "p"


def test_stream_mixed_layers_and_pixel_output(tmp_path):
    """1x1 stage, strided depthwise conv, avg-pool with its own stride, no tail."""
    skip_without("find_verilator", "find_make", "find_cxx")
    q = _quantize(_mixed())
    sd = build_stream(q)
    assert [s.kernel for s in sd.stages] == [(1, 1), (3, 2), (2, 2), (1, 1)]
    assert sd.tail is None and sd.pixels_out == 3 * 4
    fw = firmware.generate(q, tmp_path / "fw", io="stream")
    r = firmware.check(fw, _images(q, 30), q=q)
    assert r["exact"], r["mismatches"]


def test_stream_conv1d(tmp_path):
    skip_without("find_verilator", "find_make", "find_cxx")
    q = _quantize(_conv1d())
    fw = firmware.generate(q, tmp_path / "fw", io="stream")
    r = firmware.check(fw, _images(q, 40), q=q)
    assert r["exact"], r["mismatches"]
    assert r["ii"] == 22


def test_beats_round_trip():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    beats = to_beats(x, (3, 4, 5))
    assert beats.shape == (40, 3)
    assert list(beats[1]) == [x[0, 0, 0, 1], x[0, 1, 0, 1], x[0, 2, 0, 1]]  # raster order
    assert np.array_equal(from_beats(beats, 2, (3, 4, 5)), x)


def test_stream_area_follows_the_kernel_not_the_image():
    """The conv datapaths are the same for an 8x8 and a 24x24 image; only buffers grow."""
    small = build_stream(_quantize(_cnn((2, 8, 8))))
    big = build_stream(_quantize(_cnn((2, 24, 24))))
    for a, b in zip(small.stages, big.stages, strict=True):
        assert len(a.design.nl.nets) == len(b.design.nl.nets)
    e_small, e_big = (
        estimate_stream(small),
        firmware.estimate(_quantize(_cnn((2, 24, 24))), io="stream"),
    )
    s0, b0 = e_small.per_layer["lightspeed_top_s0"], e_big.per_layer["lightspeed_top_s0"]
    assert b0["lut"] < 1.5 * s0["lut"]
    # the fully parallel design builds each output pixel: far larger at 24x24
    par = firmware.estimate(_quantize(_cnn((2, 24, 24))))
    assert e_big.lut < par.lut / 10


def test_stream_refusals():
    q = _quantize(_cnn(pads=[1, 1, 1, 1]))
    with pytest.raises(UnsupportedOpError, match=r"'conv1' \(conv\).*padding"):
        build_stream(q)
    from tests.firmware.models import quantized

    with pytest.raises(UnsupportedOpError, match=r"streams images.*Generate with --io parallel"):
        build_stream(quantized("mlp_auto"))
    rng = np.random.default_rng(0)
    nodes = [
        Node("conv1", "conv", ["x"], ["c1"], {},
             {"weight": rng.normal(0, 0.4, (2, 2, 3, 3)), "bias": np.zeros(2)}),
        Node("conv2", "conv", ["c1"], ["c2"], {"pads": [1, 1, 1, 1]},
             {"weight": rng.normal(0, 0.4, (2, 2, 3, 3)), "bias": np.zeros(2)}),
        Node("add", "add", ["c2", "c1"], ["y"]),
    ]  # fmt: skip
    g = infer_shapes(Graph("res", {"x": (2, 6, 6)}, ["y"], nodes))
    with pytest.raises(
        UnsupportedOpError, match=r"'conv2' \(conv\) shares its input 'c1' with \['add'\]"
    ):
        build_stream(_quantize(g))


def test_stream_cli(tmp_path, capsys):
    from lightspeed.cli import main

    q = _quantize(_cnn())
    q.save(tmp_path / "model")
    assert (
        main(["firmware", str(tmp_path / "model"), "-o", str(tmp_path / "fw"), "--io", "stream"])
        == 0
    )
    out = capsys.readouterr().out
    assert "64 pixel beats per image (II=64 cycles)" in out
    text = (tmp_path / "fw" / "rtl" / "lightspeed_top.v").read_text()
    assert text.count("module lightspeed_top_s") == 3 and "line buffers" in text
    readme = (tmp_path / "fw" / "README.md").read_text()
    assert (
        "64 beats, one pixel per beat" in readme
        and "| `lightspeed_top_s0` | conv1, relu1 |" in readme
    )
    np.save(tmp_path / "x.npy", _images(q, 10))
    assert main(["sim", str(tmp_path / "fw"), "--input", str(tmp_path / "x.npy"), "--check"]) == 0
    assert "bit-exact with the emulator on all 10 vectors" in capsys.readouterr().out


def test_quick_estimate_learns_stream_mode():
    """The graph-level estimate (no lowering) tracks the stream netlist estimate."""
    from lightspeed.firmware.config import FirmwareOptions
    from lightspeed.firmware.fit import quick_estimate
    from lightspeed.firmware.parts import get_part

    q = _quantize(_cnn((2, 24, 24)))
    quick = quick_estimate(q, get_part("xcvu9p"), FirmwareOptions(io="stream"))
    full = estimate_stream(build_stream(q))
    assert 0.7 <= quick.lut / full.lut <= 1.3, (quick.lut, full.lut)
    assert quick.dsp == pytest.approx(full.dsp, abs=2)
    par = quick_estimate(q, get_part("xcvu9p"))
    assert quick.lut < par.lut / 5


def test_refusal_offers_streaming(tmp_path):
    """A CNN too big for a small part when parallel: the refusal gives the streaming numbers."""
    from lightspeed.errors import ConfigError

    q = _quantize(_cnn((2, 40, 40)))
    with pytest.raises(ConfigError, match=r"--io stream, one pixel per clock\): ~[\d,]+ LUT"):
        firmware.generate(q, tmp_path / "fw", part="xc7z020")
    fw = firmware.generate(q, tmp_path / "fw", part="xc7z020", io="stream")
    assert fw.manifest["stream"]["ii"] == 1600


def test_stream_hls_is_refused(tmp_path):
    from lightspeed.errors import ConfigError

    with pytest.raises(ConfigError, match="--target verilog only"):
        firmware.generate(_quantize(_cnn()), tmp_path / "fw", target="hls", io="stream")
