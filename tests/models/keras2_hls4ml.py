"""Convert a QKeras model with hls4ml 1.3 and run its C simulation (inside the Keras 2 venv).

``python keras2_hls4ml.py MODEL.h5 INPUTS.npz OUTDIR`` writes ``OUTDIR/hls4ml.npz``
with ``y`` (hls4ml's ``predict``) and ``types`` (the C++ typedefs it chose).
hls4ml types every layer from the QKeras quantizers (``granularity="name"``),
the input as ``ap_fixed<16,6>`` (its default), and sizes the other results
itself ("auto").
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tf_keras

sys.modules["keras"] = tf_keras  # hls4ml picks its Keras 2 path by keras.__version__

import hls4ml  # noqa: E402
from qkeras.utils import load_qmodel  # noqa: E402


def main(model_file: str, inputs: str, out: str) -> None:
    model = load_qmodel(model_file, compile=False)
    cfg = hls4ml.utils.config_from_keras_model(
        model, granularity="name", default_precision="ap_fixed<16,6>", backend="Vitis"
    )
    cfg["Model"]["Strategy"] = "Latency"
    first = model.layers[0].name
    cfg["LayerName"][first]["Precision"]["result"] = "ap_fixed<16,6>"
    hm = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=os.path.join(out, "prj"), project_name="myproject",
        backend="Vitis", io_type="io_parallel",
    )  # fmt: skip
    hm.compile()
    x = np.load(inputs)["x"].astype(np.float64)
    y = np.asarray(hm.predict(np.ascontiguousarray(x))).reshape(len(x), -1)
    with open(os.path.join(out, "prj", "firmware", "defines.h")) as f:
        types = [line.strip() for line in f if line.startswith("typedef")]
    np.savez(os.path.join(out, "hls4ml.npz"), y=y, types=np.array(types))


if __name__ == "__main__":
    main(*sys.argv[1:4])
