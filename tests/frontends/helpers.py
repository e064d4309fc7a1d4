"""Helpers shared by the frontend tests: build ONNX graphs, run them, run the IR in float."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def make_model(nodes, inputs, outputs, inits=None, opset=17, extra_opsets=()):
    """inputs/outputs: {name: shape list (None = symbolic)}; inits: {name: array}."""

    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(
        nodes,
        "test",
        [vi(n, s) for n, s in inputs.items()],
        [vi(n, s) for n, s in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()],
    )
    ops = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, 1) for d in extra_opsets]]
    return helper.make_model(graph, opset_imports=ops, ir_version=8)


def run_ir(graph, feeds):
    """Run the IR graph node by node with each op's float semantics."""
    from lightspeed.ops import get_op

    vals = {k: np.asarray(v, dtype=np.float64) for k, v in feeds.items()}
    for n in graph.nodes:
        vals.update(
            zip(n.outputs, get_op(n.op).run_float(n, [vals[t] for t in n.inputs]), strict=True)
        )
    return [vals[o] for o in graph.outputs]


def run_ort(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})


def rnd(*shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed + sum(shape)).uniform(lo, hi, shape).astype(np.float32)


def check_against_ort(model, feeds, input_shape=None, atol=1e-5):
    """Import ``model``, compare IR float outputs with onnxruntime; returns the graph."""
    from lightspeed.frontends import load_model

    g = load_model(model, input_shape=input_shape)
    ref = run_ort(model, feeds)
    got = run_ir(g, feeds)
    assert len(ref) == len(got)
    for r, o in zip(ref, got, strict=True):
        assert r.shape == o.shape
        np.testing.assert_allclose(o, r, atol=atol, rtol=1e-5)
    return g


def export_brevitas_mlp(path, hidden: int, outputs: int, last_bias: bool, seed: int = 0):
    """A Brevitas 8 -> hidden -> outputs MLP with fixed-point (power-of-two) quantizers,
    calibrated on random inputs and exported to QONNX at ``path``; returns the net."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("onnxoptimizer", reason="brevitas' QONNX export needs onnxoptimizer")
    import brevitas.nn as qnn
    from brevitas import quant as bq
    from brevitas.export import export_qonnx

    torch.manual_seed(seed)
    last = {"bias_quant": bq.Int16Bias} if last_bias else {}
    net = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=bq.Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(8, hidden, bias=True, weight_quant=bq.Int8WeightPerTensorFixedPoint,
                        bias_quant=bq.Int16Bias, return_quant_tensor=True),
        qnn.QuantReLU(act_quant=bq.Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(hidden, outputs, bias=last_bias,
                        weight_quant=bq.Int8WeightPerTensorFixedPoint, **last),
    )  # fmt: skip
    with torch.no_grad():
        net(torch.randn(64, 8))
    net.eval()
    export_qonnx(net, torch.randn(1, 8), str(path), dynamo=False)
    return net
