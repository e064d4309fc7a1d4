"""MatMul between two activations bit for bit against hls4ml 1.3's Einsum (slow: C++).

hls4ml's PyTorch frontend takes a product of two activations as ``torch.einsum``
(its ``Einsum`` layer, ``nnet::einsum``); lightspeed imports the same product written
as ``torch.matmul`` (its ``matmul`` op; an ONNX ``Einsum`` node is not imported).
Both sum ``acc += a*b`` in ``accum_t`` and cast the sum to the result type: hls4ml
casts each partial sum, lightspeed casts each product and then the sum, which is
the same value whenever the accumulator's rounding commutes with adding a value on
its own grid (TRN, RND, RND_MIN_INF) and its overflow wraps; SAT and RND_CONV are
where they part, measured and explained below (RND_ZERO, RND_INF, TRN_ZERO depend on
the sign of the running sum and can part the same way).
``channels_last_conversion="off"``: hls4ml would otherwise transpose the 3-d inputs.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import lightspeed

pytestmark = [pytest.mark.slow, pytest.mark.peer]

torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
hls4ml = pytest.importorskip("hls4ml", reason="hls4ml not installed (pip install hls4ml==1.3.0)")
if shutil.which("g++") is None:
    pytest.skip(
        "g++ not found: hls4ml's C simulation needs a C++ compiler", allow_module_level=True
    )

from tests.test_hls4ml_bitexact import _assert_bitexact  # noqa: E402

SHAPES = [(3, 4), (4, 5)]


class Einsum(torch.nn.Module):
    def forward(self, a, b):
        return torch.einsum("bij,bjk->bik", a, b)


class MatMul(torch.nn.Module):
    def forward(self, a, b):
        return torch.matmul(a, b)


def _inputs(sigma: float, n: int = 3000):
    rng = np.random.default_rng(0)
    return [rng.normal(0, sigma, (n, *s)) for s in SHAPES]


def _hls4ml(xs, tmp_path, accum=None, result=None):
    cfg = hls4ml.utils.config_from_pytorch_model(
        Einsum(), SHAPES, default_precision="ap_fixed<16,6>", granularity="name",
        backend="Vitis", channels_last_conversion="off",
    )  # fmt: skip
    cfg["Model"]["Strategy"] = "Latency"
    if accum:
        cfg["LayerName"]["einsum"]["Precision"].update(accum=accum, result=result)
    hm = hls4ml.converters.convert_from_pytorch_model(
        Einsum(), hls_config=cfg, output_dir=str(tmp_path / "hls"), backend="Vitis",
        io_type="io_parallel",
    )  # fmt: skip
    hm.compile()
    return np.asarray(hm.predict([np.ascontiguousarray(x) for x in xs]), dtype=np.float64)


def _lightspeed(xs, accum=None, result=None):
    g = lightspeed.load(MatMul(), input_shape=SHAPES)
    assert [n.op for n in g.nodes] == ["matmul"]
    layers = {g.nodes[0].name: {"accum": accum, "result": result}} if accum else {}
    q = lightspeed.quantize(g, "ap_fixed<16,6>", config={"layers": layers})
    return q.predict_dict(dict(zip(g.inputs, xs, strict=True)))[g.outputs[0]]


@pytest.mark.parametrize(
    ("sigma", "accum", "result"),
    [
        (0.7, None, None),  # in range
        (2.5, None, None),  # partial sums wrap in ap_fixed<16,6>
        (1.5, "ap_fixed<14,4,RND>", "ap_fixed<10,3,RND,SAT>"),
        (1.5, "ap_fixed<13,5,RND_MIN_INF>", "ap_fixed<12,4,TRN_ZERO,SAT_SYM>"),
    ],
    ids=["in-range", "wrapping", "rnd", "rnd-min-inf"],
)
def test_matmul_matches_hls4ml_einsum(tmp_path, sigma, accum, result):
    xs = _inputs(sigma)
    theirs = _hls4ml(xs, tmp_path, accum, result)
    ours = _lightspeed(xs, accum, result)
    _assert_bitexact(ours, theirs)
    assert len(np.unique(ours)) > 300


def _products(xs) -> np.ndarray:
    """Every product a[i, j] * b[j, k] of the ap_fixed<16,6> inputs, as (n, i*k, j)."""
    a, b = (np.floor(x * 2**10) / 2**10 for x in xs)
    return np.einsum("bij,bjk->bikj", a, b).reshape(len(a), -1, a.shape[-1])


@pytest.mark.parametrize(
    ("accum", "where"),
    [
        # saturation: hls4ml saturates the running sum only, lightspeed each product too
        ("ap_fixed<10,3,TRN,SAT>", lambda p: ((p >= 4 - 2**-7) | (p < -4)).any(-1)),
        # RND_CONV (ties to even) is not shift-invariant: a tie in one product decides
        ("ap_fixed<14,4,RND_CONV>", lambda p: (np.mod(p * 2**20, 2**10) == 2**9).any(-1)),
    ],
    ids=["sat", "rnd-conv"],
)
def test_where_hls4ml_einsum_differs(tmp_path, accum, where):
    """The two accumulator modes under which hls4ml's running-sum cast and lightspeed's
    per-product cast can part: outputs differ, and only where the stated cause occurs.
    Measured on these 3000 x 15 outputs: 9,979 differ with SAT (every one has a product
    beyond the accumulator), 31 with RND_CONV (every one has a product at a tie)."""
    xs = _inputs(2.0 if "SAT" in accum else 1.5)
    result = "ap_fixed<10,3,RND,SAT>"
    theirs = _hls4ml(xs, tmp_path, accum, result).reshape(len(xs[0]), -1)
    ours = _lightspeed(xs, accum, result).reshape(len(xs[0]), -1)
    differ = ours != theirs
    assert differ.any() and not (differ & ~where(_products(xs))).any()
