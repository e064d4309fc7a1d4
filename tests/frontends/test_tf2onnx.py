"""Keras and QKeras models exported to ONNX by their own tools, against the frameworks.

The Keras 2 venv (tests/models/keras_corpus.py) writes, next to the Keras files,
``k2_mlp``/``k2_cnn``/``k2_upsample`` exported by tf2onnx (float, NHWC with Transposes
around the convolutions; bilinear ``UpSampling2D`` as ``Resize`` linear/half_pixel) and ``qmlp6``/``qcnn6_tf2onnx`` exported by qonnx's QKeras converter
(``qonnx.converters.keras.from_keras``, which wraps tf2onnx: QONNX with ``Quant``
nodes on weights, biases and activations, MatMul + Add(Quant(bias)) for QDense).
Float exports keep >= 99% argmax agreement with Keras at auto precision; QONNX
exports at ``--precision trained`` with ``ap_fixed<16,6>`` inputs equal both
QKeras's ``model.predict`` and qonnx's ``execute_onnx`` bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightspeed
from tests.frontends.test_keras import _out, keras2_dir  # noqa: F401  (session fixture)

pytest.importorskip("onnx")


def _export(d, name, kind):
    path = d / f"{name}_{kind}.onnx"
    if not path.exists():
        pytest.skip(f"the Keras 2 venv wrote no {path.name} (tf2onnx/qonnx missing there)")
    return path


@pytest.mark.peer
@pytest.mark.parametrize("fmt", ["tf2onnx", "h5"])
@pytest.mark.parametrize("name", ["k2_mlp", "k2_cnn", "k2_upsample"])
def test_tf2onnx_float_keras(keras2_dir, name, fmt):  # noqa: F811
    """k2_upsample: UpSampling2D(bilinear) is Resize linear/half_pixel in the export."""
    ref = np.load(keras2_dir / f"{name}.npz")
    path = keras2_dir / f"{name}.h5" if fmt == "h5" else _export(keras2_dir, name, fmt)
    g = lightspeed.load(path)
    if name == "k2_upsample":
        assert "resize_linear" in {n.op for n in g.nodes}
    q = lightspeed.quantize(g, calibration=ref["x"])
    f = np.asarray(q.predict_float(ref["x"])).reshape(ref["y"].shape)
    np.testing.assert_allclose(f, ref["y"], atol=2e-5)
    y = _out(g, q.predict(ref["x"]))
    assert y.shape == ref["y"].shape
    agree = (y.argmax(-1) == ref["y"].argmax(-1)).mean()
    assert agree >= 0.99, agree


def _qonnx_exec(path, x):
    pytest.importorskip("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    mw = ModelWrapper(str(path))
    i, o = mw.graph.input[0].name, mw.graph.output[0].name
    return np.concatenate([execute_onnx(mw, {i: x[k : k + 1]})[o] for k in range(len(x))])


@pytest.mark.peer
@pytest.mark.parametrize("name", ["qmlp6", "qcnn6_tf2onnx"])
def test_qkeras_via_qonnx_trained_bit_exact(keras2_dir, name):  # noqa: F811
    ref = np.load(keras2_dir / f"{name}.npz")
    path = _export(keras2_dir, name, "qonnx")
    g = lightspeed.load(path)
    ops = [n.op for n in g.nodes]
    assert ops.count("quant") >= 2 and "add" not in ops  # bias Quant fused with its type
    inp = next(iter(g.inputs))
    q = lightspeed.quantize(g, precision="trained", input_types={inp: "ap_fixed<16,6>"})
    y = _out(g, q.predict(ref["x"])).reshape(ref["y"].shape)
    assert int((y != ref["y"]).sum()) == 0  # QKeras's own forward
    n = 40  # qonnx executes one sample at a time (the export fixes the batch to 1)
    want = _qonnx_exec(path, ref["x"][:n])
    assert int((y[:n] != want.reshape(y[:n].shape)).sum()) == 0


@pytest.mark.peer
def test_cli_compile_qonnx_export_trained(keras2_dir, tmp_path):  # noqa: F811
    from lightspeed.cli import main

    ref = np.load(keras2_dir / "qcnn6_tf2onnx.npz")
    np.save(tmp_path / "x.npy", ref["x"])
    out = tmp_path / "compiled"
    path = _export(keras2_dir, "qcnn6_tf2onnx", "qonnx")
    args = ["compile", str(path), "-o", str(out), "--precision", "trained",
            "--input-type", "ap_fixed<16,6>", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert main(["predict", str(out), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy")]) == 0  # fmt: skip
    y = np.load(tmp_path / "y.npy")
    assert np.array_equal(y.reshape(ref["y"].shape), ref["y"])


@pytest.mark.peer
def test_plain_tf2onnx_qkeras_is_refused_with_advice(keras2_dir):  # noqa: F811
    """Plain tf2onnx writes QKeras's quantizers as float Round/Clip arithmetic: say what to do."""
    from lightspeed.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match=r"Round .*from_keras"):
        lightspeed.load(_export(keras2_dir, "qmlp6", "tf2onnx"))
