"""Magnitude pruning: exact zeros through training, export, the emulator and the firmware."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")

import lightspeed.nn as lnn  # noqa: E402
from lightspeed.errors import ConfigError  # noqa: E402
from lightspeed.firmware.fit import quick_estimate  # noqa: E402
from lightspeed.firmware.parts import get_part  # noqa: E402
from lightspeed.nn.prune import mac_layers  # noqa: E402
from lightspeed.quantize.report import build_report  # noqa: E402


def _model(seed=0):
    torch.manual_seed(seed)
    w = "ap_fixed<6,1,RND,SAT>"
    return torch.nn.Sequential(
        lnn.QInput("ap_fixed<10,4,RND,SAT>"),
        lnn.QLinear(16, 32, weight=w), lnn.QBatchNorm1d(32), lnn.QReLU("ap_ufixed<6,2,RND,SAT>"),
        lnn.QLinear(32, 5, weight=w),
    )  # fmt: skip


def _data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0.5)
    return x, y


def test_schedule_ramps_to_the_target():
    s = lnn.PruningSchedule(target=0.8, begin=2, end=6)
    got = [s.sparsity_at(e) for e in range(8)]
    assert got[:2] == [0.0, 0.0] and got[6:] == [0.8, 0.8]
    assert all(a <= b for a, b in itertools.pairwise(got))  # monotone
    with pytest.raises(ConfigError):
        lnn.PruningSchedule(target=1.0)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_pruned_training_gives_exact_zeros_everywhere(scope):
    model = _model()
    x, y = _data()
    sched = lnn.PruningSchedule(target=0.7, begin=0, end=6, scope=scope)
    lnn.fit(model, x, y, epochs=10, lr=1e-2, prune=sched)
    dense = _model()
    lnn.fit(dense, x, y, epochs=10, lr=1e-2)
    sp = lnn.sparsity_of(model)
    total = sum(m.weight.numel() for _, m in mac_layers(model))
    pruned = sum(sp[n] * m.weight.numel() for n, m in mac_layers(model))
    assert pruned / total == pytest.approx(0.7, abs=0.02)
    if scope == "layer":
        assert all(v == pytest.approx(0.7, abs=0.02) for v in sp.values())
    # pruned to 70% while training, it keeps most of the unpruned model's accuracy
    with torch.no_grad():
        acc = float((model(torch.as_tensor(x)).argmax(1).numpy() == y).mean())
        acc_dense = float((dense(torch.as_tensor(x)).argmax(1).numpy() == y).mean())
    assert acc > acc_dense - 0.05 and acc_dense > 0.7, (acc, acc_dense)
    q = lnn.to_quantized(model.eval(), (16,))
    # pruned weights are exact zeros in the compiled integers, BN folding included
    rep = build_report(q)
    sizes = {n: q.qparams[n]["weight"].size for n in q.qparams if "weight" in q.qparams[n]}
    zeros = {lay["name"]: lay["sparsity"] for lay in rep["layers"] if "sparsity" in lay}
    assert len(zeros) == 2
    share = sum(zeros[n] * sizes[n] for n in zeros) / sum(sizes.values())
    assert share >= 0.69  # at least the pruned share (quantization may round more to 0)
    # and the emulator is bit-exact with the pruned PyTorch model
    with torch.no_grad():
        want = model(torch.as_tensor(x[:500])).numpy()
    np.testing.assert_array_equal(q.predict(x[:500]), want)


def test_pruning_shrinks_the_firmware_estimate():
    x, y = _data()
    dense = _model()
    lnn.fit(dense, x, y, epochs=2)
    pruned = _model()
    lnn.fit(pruned, x, y, epochs=2)
    lnn.prune(pruned, 0.8)
    part = get_part("xcvu9p")
    full = quick_estimate(lnn.to_quantized(dense.eval(), (16,)), part).lut
    small = quick_estimate(lnn.to_quantized(pruned.eval(), (16,)), part).lut
    assert small < 0.4 * full


def test_prune_refuses_nonsense():
    with pytest.raises(ConfigError, match="sparsity"):
        lnn.prune(_model(), 1.5)
    with pytest.raises(ConfigError, match="scope"):
        lnn.prune(_model(), 0.5, scope="tensor")
    with pytest.raises(ConfigError, match="no QLinear"):
        lnn.prune(torch.nn.Sequential(torch.nn.ReLU()), 0.5)
