"""Bit-exact agreement with hls4ml 1.3's C simulation (slow: hls4ml compiles C++).

The same PyTorch model goes through ``hls4ml.converters.convert_from_pytorch_model``
(Vitis backend, io_parallel, Latency strategy) + ``compile()`` + ``predict()`` and
through ``lightspeed.load`` + ``quantize`` + ``predict`` with the same types;
every output must be identical (float64 outputs hold the exact fixed values).

Covered: the 16->64->32->32->5 MLP at uniform ap_fixed<16,6> (hls4ml
``granularity='model'``), the same MLP with different per-layer types (every
quantization and overflow mode somewhere, narrow wrapping and saturating
accumulators, truncated products), and a small CNN (Conv2D + ReLU + MaxPool +
Dense). hls4ml converts PyTorch CNNs to channels-last internally but takes
channels-first inputs (``ChannelsLastConversion: full``), like lightspeed.
Softmax/sigmoid/tanh are left out here: lightspeed's default tables are laid out
differently from hls4ml's (documented in docs/quantization.md); sigmoid/tanh with
``table_layout: hls4ml`` are compared inside LSTM/GRU in test_hls4ml_recurrent.py.
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

nn = torch.nn


def _mlp(seed: int = 0):
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Linear(16, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    )
    return m.eval()


def _cnn(seed: int = 0):
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
    )
    return m.eval()


def _hls4ml_predict(model, input_shape, x, tmp_path, precision=None, layer_types=None):
    """hls4ml C simulation; ``layer_types``: hls4ml layer name -> {role: type}."""
    granularity = "name" if layer_types else "model"
    cfg = hls4ml.utils.config_from_pytorch_model(
        model,
        input_shape,
        default_precision=precision or "ap_fixed<16,6>",
        granularity=granularity,
        backend="Vitis",
    )
    cfg["Model"]["Strategy"] = "Latency"
    for name, roles in (layer_types or {}).items():
        cfg["LayerName"][name]["Precision"].update(roles)
    hm = hls4ml.converters.convert_from_pytorch_model(
        model,
        hls_config=cfg,
        output_dir=str(tmp_path / "hls"),
        backend="Vitis",
        io_type="io_parallel",
    )
    hm.compile()
    return np.asarray(hm.predict(np.ascontiguousarray(x, dtype=np.float64)), dtype=np.float64)


def _assert_bitexact(ours: np.ndarray, theirs: np.ndarray) -> None:
    ours = ours.reshape(len(ours), -1)
    theirs = theirs.reshape(len(theirs), -1)
    assert ours.shape == theirs.shape
    bad = np.argwhere(ours != theirs)
    assert bad.size == 0, (
        f"{len(bad)} of {ours.size} outputs differ; first at {tuple(bad[0])}: "
        f"lightspeed {ours[tuple(bad[0])]!r} hls4ml {theirs[tuple(bad[0])]!r}"
    )


def _predictions(q, x, monkeypatch) -> list[np.ndarray]:
    """lightspeed's outputs on the default path and, when numba is there, the JIT kernels."""
    from lightspeed.ops import _mac_jit
    from lightspeed.ops import mac as mac_mod

    outs = [q.predict(x)]
    if _mac_jit.kernels() is not None:
        with monkeypatch.context() as m:
            m.setattr(mac_mod, "JIT_MIN_WORK", 0)
            outs.append(q.predict(x))
    return outs


def _inputs(shape, n=3000, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2.0, (n, *shape))
    x[: n // 10] *= 12  # far out of range: exercises input overflow and accumulator wrap
    return x


def test_mlp_uniform_ap_fixed_16_6(tmp_path, monkeypatch) -> None:
    model = _mlp()
    x = _inputs((16,))
    theirs = _hls4ml_predict(model, (16,), x, tmp_path)
    q = lightspeed.quantize(lightspeed.load(model, input_shape=(16,)), "ap_fixed<16,6>")
    for ours in _predictions(q, x, monkeypatch):
        _assert_bitexact(ours, theirs)
        assert len(np.unique(ours)) > 100  # a real comparison, not two constant outputs


# per-layer types in hls4ml layer order (input, then _0.._6), every mode somewhere
_LAYER_TYPES = [
    ("input_1", {"result": "ap_fixed<12,4,RND,SAT>"}),
    (
        "_0",
        {
            "weight": "ap_fixed<8,2,RND_CONV,SAT>",
            "bias": "ap_fixed<10,3>",
            "accum": "ap_fixed<14,5>",
            "result": "ap_fixed<12,5,RND,SAT>",
        },
    ),
    ("_1", {"result": "ap_ufixed<10,4,RND_ZERO,SAT>"}),
    (
        "_2",
        {
            "weight": "ap_fixed<10,3,RND_INF,SAT_SYM>",
            "bias": "ap_fixed<12,4,RND>",
            "accum": "ap_fixed<18,7,RND,SAT>",
            "result": "ap_fixed<14,6,TRN_ZERO,SAT_ZERO>",
        },
    ),
    ("_3", {"result": "ap_fixed<12,5,RND_MIN_INF,WRAP>"}),
    (
        "_4",
        {
            "weight": "ap_fixed<6,1,RND,SAT>",
            "bias": "ap_fixed<8,2>",
            "accum": "ap_fixed<24,10,RND_CONV,SAT_SYM>",
            "result": "ap_fixed<16,6,RND_CONV,SAT_SYM>",
        },
    ),
    ("_5", {"result": "ap_ufixed<8,3,TRN,SAT>"}),
    (
        "_6",
        {
            "weight": "ap_fixed<12,2,RND,WRAP>",
            "bias": "ap_fixed<12,2>",
            "accum": "ap_fixed<20,8,TRN_ZERO,SAT_ZERO>",
            "result": "ap_fixed<18,8,RND_ZERO,WRAP>",
        },
    ),
]


def test_mlp_per_layer_types(tmp_path, monkeypatch) -> None:
    model = _mlp(seed=3)
    x = _inputs((16,), seed=2)
    theirs = _hls4ml_predict(model, (16,), x, tmp_path, layer_types=dict(_LAYER_TYPES))
    g = lightspeed.load(model, input_shape=(16,))
    assert len(g.nodes) == len(_LAYER_TYPES) - 1  # one lightspeed node per hls4ml layer
    (inp,) = g.inputs
    config = {
        "precision": "ap_fixed<16,6>",
        "inputs": {inp: _LAYER_TYPES[0][1]["result"]},
        "layers": {
            node.name: roles for node, (_, roles) in zip(g.nodes, _LAYER_TYPES[1:], strict=True)
        },
    }
    q = lightspeed.quantize(g, "ap_fixed<16,6>", config=config)
    for ours in _predictions(q, x, monkeypatch):
        _assert_bitexact(ours, theirs)


@pytest.mark.parametrize("precision", ["ap_fixed<16,6>", "ap_fixed<10,3,RND_CONV,SAT>"])
def test_small_cnn(tmp_path, monkeypatch, precision: str) -> None:
    model = _cnn()
    shape = (2, 10, 10)
    x = _inputs(shape, n=1000)
    theirs = _hls4ml_predict(model, shape, x, tmp_path, precision=precision)
    q = lightspeed.quantize(lightspeed.load(model, input_shape=shape), precision)
    for ours in _predictions(q, x, monkeypatch):
        _assert_bitexact(ours, theirs)
        assert len(np.unique(ours)) > 50
