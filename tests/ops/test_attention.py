"""Multi-head attention as a composition of dense, matmul, softmax and layernorm ops:
torch nn.MultiheadAttention / TransformerEncoderLayer and a hand-written block, float and auto
precision against torch, refusals, and the RTL bit-exact against the emulator."""

from __future__ import annotations

import io

import numpy as np
import pytest

import lightspeed
from lightspeed.errors import LightspeedError, UnsupportedOpError

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from tests.firmware.check import assert_firmware_exact  # noqa: E402
from tests.frontends.helpers import run_ir  # noqa: E402


class Block(torch.nn.Module):
    """A post-norm encoder block (MHA + LayerNorm + MLP) and a classification head."""

    def __init__(self, d=8, heads=2, hidden=16, classes=5, attention="torch"):
        super().__init__()
        self.attention = attention
        if attention == "torch":
            self.att = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        else:
            self.heads, self.qkv, self.proj = (
                heads,
                torch.nn.Linear(d, 3 * d),
                torch.nn.Linear(d, d),
            )
        self.n1, self.n2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d)
        )
        self.out = torch.nn.Linear(d, classes)

    def attend(self, x):
        if self.attention == "torch":
            return self.att(x, x, x)[0]
        b, n, d = x.shape
        hd = d // self.heads
        q, k, v = (
            t.reshape(b, n, self.heads, hd).transpose(1, 2) for t in self.qkv(x).chunk(3, -1)
        )
        a = torch.softmax(q @ k.transpose(-2, -1) / hd**0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x):
        x = self.n1(x + self.attend(x))
        x = self.n2(x + self.mlp(x))
        return self.out(x.mean(dim=1))


def _data(n=1500, tokens=16, d=8):
    return np.random.default_rng(0).normal(0, 1, (n, tokens, d)).astype(np.float32)


def _agree(m, g, x):
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {next(iter(g.inputs)): x})[0], ref, atol=2e-5)
    y = lightspeed.quantize(g, "auto", x[:500]).predict(x)
    return (y.argmax(-1) == ref.argmax(-1)).mean()


@pytest.mark.parametrize("attention", ["torch", "written"])
def test_encoder_block_auto_precision_agrees_with_torch(attention):
    torch.manual_seed(0)
    m = Block(attention=attention).eval()
    g = lightspeed.load(m, input_shape=(16, 8))
    ops = [n.op for n in g.nodes]
    assert ops.count("matmul") == 2 and "softmax" in ops and ops.count("layernorm") == 2
    assert _agree(m, g, _data()) >= 0.99


def test_transformer_encoder_layer_imports():
    torch.manual_seed(1)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    m = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.Linear(16 * 8, 5)).eval()
    g = lightspeed.load(m, input_shape=(16, 8))
    assert [n.op for n in g.nodes].count("layernorm") == 2
    assert _agree(m, g, _data()) >= 0.99


def test_user_export_with_the_dynamo_exporter_imports():
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    m = Block(attention="written").eval()
    buf = io.BytesIO()
    torch.onnx.export(m, torch.zeros(2, 16, 8), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=True)  # fmt: skip
    model = onnx.load_from_string(buf.getvalue())
    assert "Split" in {n.op_type for n in model.graph.node}
    g = lightspeed.load(model)
    x = _data(200)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ir(g, {"x": x})[0], ref, atol=2e-5)


def test_unsupported_attention_forms_are_named():
    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.att = torch.nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.att(x, x, x, attn_mask=torch.zeros(4, 4, dtype=torch.bool))[0]

    with pytest.raises(LightspeedError, match="mask"):
        lightspeed.load(Masked().eval(), input_shape=(4, 8))
    seq_first = torch.nn.Sequential()
    seq_first.add_module("att", torch.nn.MultiheadAttention(8, 2))
    with pytest.raises(UnsupportedOpError, match="batch_first"):
        lightspeed.load(seq_first, input_shape=(4, 8))


@pytest.mark.slow  # ~1 min each on a loaded 2-core machine
@pytest.mark.parametrize("target", ["verilog", "hls"])
def test_attention_block_firmware_bit_exact(target, tmp_path):
    from lightspeed.quantize import AutoOptions

    torch.manual_seed(0)
    m = Block(d=4, heads=2, hidden=4, classes=3).eval()
    g = lightspeed.load(m, input_shape=(4, 4))
    x = _data(300, tokens=4, d=4)
    q = lightspeed.quantize(g, "auto", x, options=AutoOptions(weight_bits=6, frac_bits=4,
                                                             table_bits=8))  # fmt: skip
    for node in q.graph.nodes:  # small tables keep the simulation quick
        if node.op == "softmax":
            assert node.attrs["exp_table_size"] >= 64
    assert_firmware_exact(q, tmp_path, target, n=500)
