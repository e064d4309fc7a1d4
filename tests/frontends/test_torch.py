"""PyTorch modules imported through the torch frontend match torch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frontends.helpers import run_ir, run_ort

torch = pytest.importorskip("torch")
nn = torch.nn
pytest.importorskip("onnxruntime")


def _check(module, shape, batch=5):
    from lightspeed.frontends import load_model
    from lightspeed.frontends.torch import export_onnx_bytes

    torch.manual_seed(0)
    module.eval()
    g = load_model(module, input_shape=shape)
    x = np.random.default_rng(1).normal(size=(batch, *shape)).astype(np.float32)
    got = run_ir(g, {next(iter(g.inputs)): x})[0]
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    ort_ref = run_ort(export_onnx_bytes(module, shape), {"input": x})[0]
    np.testing.assert_allclose(got, ort_ref, atol=1e-5, rtol=1e-5)
    return g


def _randomize_bn(bn):
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)


def test_mlp():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.LeakyReLU(0.2),
        nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5), nn.Softmax(dim=-1),
    )  # fmt: skip
    g = _check(m, (16,))
    assert [n.op for n in g.nodes] == [
        "dense", "relu", "dense", "leaky_relu", "dense", "tanh", "dense", "softmax",
    ]  # fmt: skip


def test_mlp_with_batchnorm1d_and_hardtanh():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(8, 6), nn.BatchNorm1d(6), nn.Hardtanh(), nn.Linear(6, 2), nn.Sigmoid()
    )
    _randomize_bn(m[1])
    g = _check(m, (8,))
    assert [n.op for n in g.nodes] == ["dense", "clip", "dense", "sigmoid"]


def test_conv1d():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv1d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.Conv1d(8, 4, 3, dilation=2),
        nn.AvgPool1d(2), nn.Flatten(), nn.Linear(4 * 4, 3),
    )  # fmt: skip
    g = _check(m, (3, 24))
    assert "conv" in [n.op for n in g.nodes]


def test_conv2d_with_batchnorm_is_folded():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.MaxPool2d(2), nn.Conv2d(8, 4, 3, padding="same"), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )  # fmt: skip
    _randomize_bn(m[1])
    _randomize_bn(m[5])
    g = _check(m, (3, 8, 8))
    assert "batchnorm" not in [n.op for n in g.nodes]


def test_depthwise_separable():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(4, 4, 3, groups=4, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 1), nn.AvgPool2d(2, stride=2), nn.Flatten(),
    )  # fmt: skip
    _randomize_bn(m[1])
    g = _check(m, (4, 6, 6))
    assert g.nodes[0].attrs["group"] == 4


class _Skip(nn.Module):
    """Residual add + concat skip connection with a torch-style view."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        r = self.bn(self.b(h)) + h
        c = torch.cat([r, h], dim=1)
        c = nn.functional.max_pool2d(c, 2)
        return self.fc(c.view(c.size(0), -1))


def test_skip_connections_add_concat():
    torch.manual_seed(0)
    m = _Skip()
    _randomize_bn(m.bn)
    g = _check(m, (2, 8, 8))
    ops = [n.op for n in g.nodes]
    assert "add" in ops and "concat" in ops and "reshape" in ops


def test_torch_needs_input_shape():
    from lightspeed.errors import ShapeError
    from lightspeed.frontends import load_model

    with pytest.raises(ShapeError, match="input_shape"):
        load_model(nn.Linear(3, 2))


class _TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(5, 4)

    def forward(self, x, y):
        h = self.a(x) + self.b(y)
        return h, torch.relu(h)


@pytest.mark.parametrize(
    ("shape", "names"),
    [([(3,), (5,)], ["x", "y"]), ({"p": (3,), "q": (5,)}, ["p", "q"]), ("3;5", ["x", "y"])],
)
def test_multi_input_output_names(shape, names):
    from lightspeed.emulate import run_float
    from lightspeed.frontends import load_model

    torch.manual_seed(0)
    m = _TwoInTwoOut().eval()
    g = load_model(m, input_shape=shape)
    assert list(g.inputs) == names and g.outputs == ["output0", "output1"]
    x, y = (
        np.random.default_rng(0).normal(size=(4, 3)),
        np.random.default_rng(1).normal(size=(4, 5)),
    )
    out = run_float(g, dict(zip(names, [x, y], strict=True)))
    with torch.no_grad():
        ref = m(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    for o, r in zip(g.outputs, ref, strict=True):
        np.testing.assert_allclose(out[o], r.numpy(), atol=1e-5)


def test_wrong_input_shape_for_module():
    from lightspeed.errors import ModelError
    from lightspeed.frontends import load_model

    with pytest.raises(ModelError, match="does not run on inputs of shape"):
        load_model(nn.Linear(3, 2), input_shape=(4,))


def test_dynamo_exported_onnx_imports():
    """Models exported with torch's newer dynamo exporter (opset 18+) import too."""
    pytest.importorskip("onnxscript", reason="torch's dynamo ONNX exporter needs onnxscript")
    import logging
    import warnings

    from lightspeed.emulate import run_float
    from lightspeed.frontends import load_model

    torch.manual_seed(0)
    m = _Skip().eval()
    _randomize_bn(m.bn)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            m, (torch.zeros(2, 2, 8, 8),), dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )  # fmt: skip
    g = load_model(prog.model_proto)
    x = np.random.default_rng(3).normal(size=(4, 2, 8, 8))
    got = run_float(g, {next(iter(g.inputs)): x})[g.outputs[0]]
    with torch.no_grad():
        ref = m(torch.tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


class _Unexportable(nn.Module):
    """special_i1e has no ONNX symbolic: the exporter fails and dumps its IR graph."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.special.i1e(self.fc(x))


def test_unexportable_module_is_quiet(capfd, monkeypatch):
    import lightspeed
    from lightspeed.errors import ModelError

    monkeypatch.delenv("LIGHTSPEED_VERBOSE", raising=False)
    with pytest.raises(ModelError, match=r"torch\.onnx\.export failed for _Unexportable.*i1e"):
        lightspeed.load(_Unexportable(), input_shape=(4,))
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and "aten::" not in out + err
    monkeypatch.setenv("LIGHTSPEED_VERBOSE", "1")
    with pytest.raises(ModelError):
        lightspeed.load(_Unexportable(), input_shape=(4,))
    assert "Torch IR graph" in capfd.readouterr().err
