"""LSTM and GRU: imported from PyTorch as unrolled registry ops; float, auto, bad input, RTL."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import LightspeedError

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from tests.frontends.helpers import run_ir  # noqa: E402
from tests.ops.test_elementwise import _skip_without, _vectors  # noqa: E402


class Tagger(torch.nn.Module):
    """A sequence classifier as users write it: batch-first recurrence, last step, Linear."""

    def __init__(self, cell, features=4, hidden=6, classes=3):
        super().__init__()
        self.rnn = cell(features, hidden, batch_first=True)
        self.fc = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def _model(cell, **kw):
    torch.manual_seed(0)
    return Tagger(cell, **kw).eval()


@pytest.mark.parametrize("cell", [torch.nn.LSTM, torch.nn.GRU], ids=["lstm", "gru"])
def test_float_matches_torch_and_auto_keeps_the_decisions(cell):
    m = _model(cell)
    g = lightspeed.load(m, input_shape=(5, 4))
    assert {n.op for n in g.nodes} >= {"dense", "sigmoid", "tanh", "mul"}
    x = np.random.default_rng(0).normal(0, 1, (400, 5, 4)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], want, atol=1e-5)
    q = lightspeed.quantize(g, "auto", x)
    assert (q.predict(x).argmax(1) == want.argmax(1)).mean() >= 0.98


def test_onnx_gru_before_reset_form():
    """ONNX's default GRU (reset before the recurrent product), batch-first as torch wraps it."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.frontends.helpers import check_against_ort

    rng = np.random.default_rng(1)
    h, f, t = 3, 2, 4
    w = rng.normal(0, 0.5, (1, 3 * h, f)).astype(np.float32)
    r = rng.normal(0, 0.5, (1, 3 * h, h)).astype(np.float32)
    b = rng.normal(0, 0.2, (1, 6 * h)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "w", "r", "b"], ["y4"], hidden_size=h),
        helper.make_node("Squeeze", ["y4", "ax"], ["y3"]),
        helper.make_node("Transpose", ["y3"], ["y"], perm=[1, 0, 2]),
    ]
    inits = {"w": w, "r": r, "b": b, "ax": np.array([1], dtype=np.int64)}
    graph = helper.make_graph(
        nodes, "gru",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", t, f])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", t, h])],
        [numpy_helper.from_array(v, n) for n, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    g = check_against_ort(model, {"x": rng.normal(0, 1, (20, t, f)).astype(np.float32)})
    assert "batchnorm" not in {n.op for n in g.nodes}  # reset-before form: no per-unit scale


@pytest.mark.parametrize("cell", [torch.nn.LSTM, torch.nn.GRU], ids=["lstm", "gru"])
@pytest.mark.parametrize("steps", [7, 4, 1])
def test_sequence_of_another_length_is_refused_with_the_compiled_length(cell, steps):
    from lightspeed.errors import InputError

    m = _model(cell)
    g = lightspeed.load(m, input_shape=(5, 4))
    q = lightspeed.quantize(g, "auto", np.random.default_rng(0).normal(0, 1, (100, 5, 4)))
    want = rf"input 'input' is a sequence of {steps} steps.*compiled for exactly 5 \(recurrent layer '\w+' is unrolled over 5 steps\)"
    with pytest.raises(InputError, match=want):
        q.predict(np.zeros((3, steps, 4)))
    with pytest.raises(InputError, match=want):  # the float emulation checks the same way
        lightspeed.emulate.run_float(g, {"input": np.zeros((3, steps, 4))})
    # a wrong feature count is an ordinary shape error, not a sequence length
    with pytest.raises(InputError, match=r"has shape \(3, 5, 3\); expected \(batch, 5, 4\)"):
        q.predict(np.zeros((3, 5, 3)))
    assert q.predict(np.zeros((3, 5, 4))).shape == (3, 3)


def test_sequence_length_after_a_per_step_layer_is_still_named():
    """A Linear applied to every step before the LSTM: the input is still the sequence."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = torch.nn.Linear(4, 3)
            self.rnn = torch.nn.GRU(3, 2, batch_first=True)

        def forward(self, x):
            return self.rnn(torch.relu(self.pre(x)))[0][:, -1]

    torch.manual_seed(0)
    g = lightspeed.load(Net().eval(), input_shape=(6, 4))
    from lightspeed.ops.recurrent import sequence_inputs

    assert [(k, v[0]) for k, v in sequence_inputs(g).items()] == [("input", 6)]
    with pytest.raises(LightspeedError, match="compiled for exactly 6"):
        lightspeed.emulate.run_float(g, {"input": np.zeros((2, 9, 4))})


def test_seq_first_layout_is_refused_with_the_fix(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((1, 8, 2), np.float32)
    r = np.zeros((1, 8, 2), np.float32)
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=2, name="lstm")
    graph = helper.make_graph(
        [node], "l",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, "N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(r, "r")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    with pytest.raises(LightspeedError, match=r"lstm.*layout 0.*batch_first"):
        lightspeed.load(model, input_shape=(2, 2))


def test_lstm_rtl_bit_exact(tmp_path):
    _skip_without("find_verilator", "find_make", "find_cxx")
    from lightspeed import firmware
    from lightspeed.quantize import AutoOptions

    m = _model(torch.nn.LSTM, features=2, hidden=2, classes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = lightspeed.load(m, input_shape=(2, 2))
    x = np.random.default_rng(2).normal(0, 1, (300, 2, 2))
    opts = AutoOptions(weight_bits=8, frac_bits=6, table_bits=10)
    q = lightspeed.quantize(g, "auto", x, options=opts)
    r = firmware.check(firmware.generate(q, tmp_path / "fw"), _vectors(q, 1000), q=q)
    assert r["exact"], r["mismatches"]
