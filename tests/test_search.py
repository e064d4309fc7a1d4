"""Mixed-precision search: meets its accuracy goal, lowers cost, exports bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")

from torch import nn  # noqa: E402

from lightspeed.errors import ConfigError  # noqa: E402
from lightspeed.search import SearchConfig, accuracy, bops, search  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the box is shared and the nets are tiny
    yield
    torch.set_num_threads(before)


def _problem(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] - x[:, 3] > 1).astype(
        np.int64
    )
    return x, np.minimum(y, 2)


def _float_model(x, y):
    from lightspeed.nn import fit

    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    fit(f, x, y, epochs=15, lr=1e-2, batch_size=64)
    return f


def test_search_meets_goal_and_lowers_cost():
    x, y = _problem()
    xtr, ytr, xva, yva = x[:2400], y[:2400], x[2400:], y[2400:]
    f = _float_model(xtr, ytr)
    cfg = SearchConfig(target=0.98, start_bits=8, input_bits=10, init_epochs=2, finetune_epochs=1,
                       final_epochs=1, max_rounds=12)  # fmt: skip
    res = search(f, xtr, ytr, xva, yva, (8,), cfg)
    assert res.float_accuracy > 0.8
    assert res.accuracy >= 0.98 * res.float_accuracy
    assert res.cost < res.start_cost
    assert res.cost == bops(res.quantized)
    assert max(res.widths.values()) <= 10 and min(res.widths.values()) >= cfg.min_bits
    assert any(w < 8 for k, w in res.widths.items() if k.endswith(".weight"))
    # the reported accuracy is that of the returned model, which the emulator reproduces exactly
    assert accuracy(res.model, xva, yva) == pytest.approx(res.accuracy)
    with torch.no_grad():
        want = res.model.eval()(torch.as_tensor(xva)).numpy()
    np.testing.assert_array_equal(res.quantized.predict(xva.astype(np.float64)), want)
    assert res.evaluations > 0 and res.epochs >= cfg.init_epochs


def test_search_rejects_bad_config():
    with pytest.raises(ConfigError):
        SearchConfig(target=1.5)
    with pytest.raises(ConfigError):
        SearchConfig(min_bits=9, start_bits=8)
    x, y = _problem(200)
    with pytest.raises(ConfigError, match="unknown search cost"):
        search(_float_model(x, y), x, y, x, y, (8,), SearchConfig(max_rounds=1), cost="area")


def test_cli_compile_precision_search(tmp_path, capsys):
    import lightspeed
    from lightspeed.cli import main
    from lightspeed.zoo._common import export_onnx

    x, y = _problem(1500)
    f = _float_model(x, y)
    onnx_path = export_onnx(f, x, tmp_path / "clf.onnx", "x", "logits")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "compiled"
    argv = ["compile", str(onnx_path), "-o", str(out), "--precision", "search", "--budget", "0.03",
            "--calibration", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    q = lightspeed.load_compiled(out)
    assert q.input_names == ["x"]
    pred = q.predict(x.astype(np.float64)).argmax(1)
    assert np.mean(pred == y) >= 0.97 * np.mean(f(torch.as_tensor(x)).argmax(1).numpy() == y) - 0.02
    widths = [
        t.width for n in q.graph.nodes for r, t in q.precision[n.name].items() if r == "weight"
    ]
    assert max(widths) <= 8  # narrower than the 8-bit start or equal, never the float default
    # a bad budget is one line and a non-zero exit
    assert main([*argv[:6], "--budget", "1.5", *argv[8:]]) == 2
    assert "--budget" in capsys.readouterr().err
