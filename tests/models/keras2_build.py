"""Build Keras 2 (tf.keras) and QKeras models with their own savers, plus reference outputs.

Runs INSIDE the separate Keras 2 venv (see :mod:`tests.models.keras_corpus`),
never in the test process: ``python keras2_build.py OUTDIR``. For each model
it writes the framework's own files (``NAME.json`` + ``NAME_weights.h5`` as
hls4ml's example models ship, and a full-model ``NAME.h5``) and
``NAME.npz`` with ``x`` (inputs) and ``y`` (``model.predict``).

QKeras inputs are on the ``ap_fixed<16,6>`` grid (hls4ml's default input
type) and small enough that float32 sums stay exact, so QKeras's own
forward is the bit-exact reference.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tf_keras as keras
from qkeras import (
    QActivation,
    QConv1D,
    QConv2D,
    QConv2DBatchnorm,
    QDense,
    QDepthwiseConv2D,
    QSeparableConv2D,
    binary,
    quantized_bits,
    quantized_po2,
    quantized_relu,
    ternary,
)
from tf_keras import layers as L

RNG = np.random.default_rng(7)


def grid_inputs(shape, n=300, lim=3.0, frac=10):
    x = np.clip(RNG.normal(0, 1.2, (n, *shape)), -lim, lim)
    return (np.round(x * 2**frac) / 2**frac).astype(np.float32)


def randomize(model, scale=0.5):
    """Random weights (biases too), so every quantizer sees non-trivial values."""
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = [RNG.normal(0, scale, w.shape).astype(np.float32) for w in ws]
        if isinstance(layer, L.BatchNormalization):  # gamma, beta, mean, variance > 0
            new[-1] = RNG.uniform(0.5, 2.0, ws[-1].shape).astype(np.float32)
        if isinstance(layer, QConv2DBatchnorm):  # kernel, bias, gamma, beta, iteration, mean, var
            new[4] = ws[4]
            new[6] = RNG.uniform(0.5, 2.0, ws[6].shape).astype(np.float32)
        layer.set_weights(new)


def q6():
    return quantized_bits(6, 0, alpha=1)


def qmlp6():
    x = keras.Input((16,), name="x")
    h = QDense(24, kernel_quantizer=q6(), bias_quantizer=q6(), name="fc1")(x)
    h = QActivation(quantized_relu(6, 2), name="relu1")(h)
    h = QDense(5, kernel_quantizer=q6(), bias_quantizer=q6(), name="fc2")(h)
    y = QActivation("quantized_bits(10,4,alpha=1)", name="out")(h)
    return keras.Model(x, y, name="qmlp6"), grid_inputs((16,))


def qcnn6():
    x = keras.Input((8, 8, 2), name="img")
    h = QConv2D(4, 3, padding="same", kernel_quantizer=q6(), bias_quantizer=q6(), name="c1")(x)
    h = QActivation(quantized_relu(6, 2), name="r1")(h)
    h = L.MaxPooling2D(2, name="p1")(h)
    h = QDepthwiseConv2D(3, depthwise_quantizer=q6(), bias_quantizer=q6(), name="dw")(h)
    h = QActivation(quantized_relu(6, 2), name="r2")(h)
    h = L.Flatten(name="flat")(h)
    h = QDense(5, kernel_quantizer=q6(), bias_quantizer=q6(), name="fc")(h)
    y = QActivation(quantized_bits(10, 4, alpha=1), name="out")(h)
    return keras.Model(x, y, name="qcnn6"), grid_inputs((8, 8, 2), lim=2.0)


def qconv1d_sep():
    x = keras.Input((12, 3), name="seq")
    h = QConv1D(4, 3, kernel_quantizer=q6(), bias_quantizer=q6(),
                activation="quantized_relu(6,2)", name="c1")(x)  # fmt: skip
    h = L.Reshape((10, 1, 4), name="to2d")(h)
    h = QSeparableConv2D(
        6, (3, 1), depthwise_quantizer=q6(), pointwise_quantizer=q6(), bias_quantizer=q6(),
        name="sep",
    )(h)  # fmt: skip
    h = QActivation(quantized_relu(8, 3), name="r2")(h)
    h = L.Flatten(name="flat")(h)
    h = QDense(4, kernel_quantizer=quantized_po2(4, 1), bias_quantizer=q6(), name="fc")(h)
    y = QActivation(quantized_bits(12, 5, alpha=1), name="out")(h)
    return keras.Model(x, y, name="qconv1d_sep"), grid_inputs((12, 3), lim=2.0)


def qconv_bn():
    x = keras.Input((8, 8, 2), name="img")
    h = QConv2DBatchnorm(4, 3, kernel_quantizer=quantized_bits(8, 1, alpha=1),
                         bias_quantizer=quantized_bits(8, 2, alpha=1), name="cbn")(x)  # fmt: skip
    h = QActivation(quantized_relu(6, 2), name="r1")(h)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Flatten(name="flat")(h)
    h = QDense(3, kernel_quantizer=q6(), bias_quantizer=q6(), name="fc")(h)
    y = QActivation(quantized_bits(12, 4, alpha=1), name="out")(h)
    return keras.Model(x, y, name="qconv_bn"), grid_inputs((8, 8, 2), lim=2.0)


def qbinary_ternary():
    x = keras.Input((16,), name="x")
    h = QDense(16, kernel_quantizer=binary(), bias_quantizer=quantized_bits(6, 2, alpha=1),
               name="bin")(x)  # fmt: skip
    h = QActivation(quantized_relu(4, 2), name="r1")(h)
    h = QDense(8, kernel_quantizer=ternary(), bias_quantizer=quantized_bits(6, 2, alpha=1),
               name="ter")(h)  # fmt: skip
    h = QActivation(quantized_relu(6, 3), name="r2")(h)
    h = QDense(
        5,
        kernel_quantizer=quantized_bits(6, 0),
        bias_quantizer=quantized_bits(6, 2),
        name="po2auto",
    )(h)  # fmt: skip  (no alpha: QKeras switches it to auto_po2)
    y = QActivation(quantized_bits(8, 4, alpha=1), name="out")(h)
    return keras.Model(x, y, name="qbinary_ternary"), grid_inputs((16,))


def k2_mlp():
    m = keras.Sequential([
        L.Dense(32, activation="relu", input_shape=(16,), name="fc1"),
        L.BatchNormalization(name="bn1"),
        L.Dense(16, activation="tanh", name="fc2"),
        L.Dropout(0.2, name="drop"),
        L.Dense(5, activation="softmax", name="out"),
    ], name="k2_mlp")  # fmt: skip
    return m, RNG.normal(0, 1, (400, 16)).astype(np.float32)


def k2_cnn():
    x = keras.Input((10, 10, 2), name="img")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(x)
    b = L.Conv2D(4, 3, padding="same", name="b")(x)
    b = L.BatchNormalization(name="bn")(b)
    b = L.LeakyReLU(alpha=0.1, name="lrelu")(b)
    s = L.Add(name="add")([a, b])
    c = L.Concatenate(name="cat")([s, a])
    c = L.MaxPooling2D(2, name="pool")(c)
    c = L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c2")(c)
    g = L.GlobalAveragePooling2D(name="gap")(c)
    f = L.Flatten(name="flat")(c)
    h = L.Concatenate(name="cat2")([g, f])
    y = L.Dense(5, activation="softmax", name="out")(h)
    return keras.Model(x, y, name="k2_cnn"), RNG.normal(0, 1, (400, 10, 10, 2)).astype(np.float32)


def qcnn6_tf2onnx():
    """A QKeras CNN of the layers qonnx's QKeras-to-QONNX converter handles (no depthwise)."""
    x = keras.Input((8, 8, 2), name="img")
    h = QConv2D(4, 3, padding="same", kernel_quantizer=q6(), bias_quantizer=q6(), name="c1")(x)
    h = QActivation(quantized_relu(6, 2), name="r1")(h)
    h = L.MaxPooling2D(2, name="p1")(h)
    h = QConv2D(4, 3, kernel_quantizer=q6(), bias_quantizer=q6(), name="c2")(h)
    h = QActivation(quantized_relu(6, 2), name="r2")(h)
    h = L.Flatten(name="flat")(h)
    h = QDense(5, kernel_quantizer=q6(), bias_quantizer=q6(), name="fc")(h)
    y = QActivation(quantized_bits(10, 4, alpha=1), name="out")(h)
    return keras.Model(x, y, name="qcnn6_tf2onnx"), grid_inputs((8, 8, 2), lim=2.0)


def k2_upsample():
    """Bilinear upsampling and zero padding, as tf2onnx writes them (Resize linear, Pad)."""
    x = keras.Input((6, 6, 2), name="img")
    h = L.Conv2D(3, 3, activation="relu", name="c1")(x)
    h = L.UpSampling2D(2, interpolation="bilinear", name="up")(h)
    h = L.ZeroPadding2D(((1, 0), (2, 1)), name="pad")(h)
    h = L.Conv2D(4, 3, strides=2, activation="relu", name="c2")(h)
    h = L.Flatten(name="flat")(h)
    y = L.Dense(5, activation="softmax", name="out")(h)
    return keras.Model(x, y, name="k2_upsample"), RNG.normal(0, 1, (300, 6, 6, 2)).astype(
        np.float32
    )


BUILDERS = [
    qmlp6, qcnn6, qconv1d_sep, qconv_bn, qbinary_ternary, k2_mlp, k2_cnn, qcnn6_tf2onnx,
    k2_upsample,
]  # fmt: skip
# exported to ONNX as well: float Keras with tf2onnx, QKeras with qonnx's from_keras (QONNX)
TF2ONNX = ("k2_mlp", "k2_cnn", "k2_upsample", "qmlp6")  # qmlp6: quantizers as float arithmetic
QONNX = ("qmlp6", "qcnn6_tf2onnx")


def export_onnx(model, name: str, kind: str, out: str) -> None:
    """``NAME_tf2onnx.onnx`` (float, tf2onnx) or ``NAME_qonnx.onnx`` (QONNX, qonnx.converters)."""
    import tensorflow as tf
    import tf2onnx
    import tf2onnx.convert
    import tf2onnx.optimizer  # qonnx's converter edits tf2onnx.optimizer on import

    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=model.input_names[0])]
    if kind == "tf2onnx":
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
        path = os.path.join(out, f"{name}_tf2onnx.onnx")
    else:
        from qonnx.converters.keras import from_keras

        proto, _ = from_keras(model, name, input_signature=spec, opset=13)
        path = os.path.join(out, f"{name}_qonnx.onnx")
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    for build in BUILDERS:
        model, x = build()
        randomize(model)
        name = build.__name__
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            f.write(model.to_json())
        model.save_weights(os.path.join(out, f"{name}_weights.h5"))
        model.save(os.path.join(out, f"{name}.h5"))
        y = model.predict(x, verbose=0, batch_size=len(x))
        np.savez(os.path.join(out, f"{name}.npz"), x=x, y=y)
        for kind in ("tf2onnx", "qonnx"):
            if name not in (TF2ONNX if kind == "tf2onnx" else QONNX):
                continue
            try:
                export_onnx(model, name, kind, out)
            except ImportError as exc:  # the ONNX tests then skip, naming the missing file
                print(f"no ONNX export of {name}: {exc}", file=sys.stderr)
    print("built", len(BUILDERS), "models")


if __name__ == "__main__":
    main(sys.argv[1])
