"""HLS backend: a Vitis HLS C++ project and its C simulation compiled locally with g++.

The emitter modules mirror :mod:`lightspeed.ops` by name, one per op family:

* ``emit_activations.py``: relu, leaky_relu, clip
* ``emit_quant.py``: quant
* ``emit_tables.py``: sigmoid, tanh, softmax (ROM look-ups)
* ``emit_dense.py``, ``emit_conv.py``, ``emit_scale.py`` (batchnorm): MAC loops
* ``emit_elementwise.py``: add, mul, concat
* ``emit_pooling.py``: maxpool, avgpool, global_avgpool
* ``emit_reshape.py``: flatten, reshape, transpose

Each registers its emitters with ``registry.register(op)`` and gets a
``registry.EmitContext`` (the Writer, the node, its precision and integer
parameters, the C++ types and shapes of its tensors); ``registry.py`` imports
every ``emit_*`` module it finds, so a new family is a new file, and the set
of supported ops is the set of registered ones (``tree_ensemble`` has no HLS
emitter and is refused). ``mac.py`` writes the multiply-accumulate loop once
for dense, conv and batchnorm; ``writer.py`` holds the Writer, the per-layer
function wrapper, the top function, the testbench and the build script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import LightspeedError
from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.hls.writer import write_sources
from lightspeed.firmware.tools import cache_dir, content_hash, find_ap_types, find_cxx, run_vectors
from lightspeed.fixed import to_float
from lightspeed.quantize.model import QuantizedModel


class CSimError(LightspeedError):
    """The HLS C simulation did not compile or run."""


def write_hls(q: QuantizedModel, outdir: Path, opts: FirmwareOptions) -> dict[str, str]:
    """Write the project; returns {key: relative path} of the files it wrote."""
    outdir = Path(outdir)
    files = write_sources(q, opts)
    keys = {}
    for rel, text in files.items():
        p = outdir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        keys[Path(rel).stem if not rel.endswith(".h") else "header"] = rel
    return {
        "cpp": f"firmware/{opts.top}.cpp",
        "header": f"firmware/{opts.top}.h",
        "tb": "tb/tb.cpp",
        "tcl": "build.tcl",
    }


def build_csim(
    fw, ap_types: str | os.PathLike | None = None, progress=None
) -> tuple[Path, float, bool]:
    """Compile the C simulation (cached by content hash); returns (exe, seconds, cached)."""
    inc = find_ap_types(ap_types)
    cxx = find_cxx()
    srcs = {k: fw.read(k) for k in ("cpp", "header", "tb")}
    flags = ["-std=gnu++14", "-O1", "-w"]
    key = content_hash(*srcs.values(), str(inc), cxx, " ".join(flags))
    root = cache_dir("hls-csim")
    exe = root / key / "csim"
    if exe.exists():
        return exe, 0.0, True
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        (tmp / "firmware").mkdir()
        (tmp / "firmware" / f"{fw.top}.cpp").write_text(srcs["cpp"])
        (tmp / "firmware" / f"{fw.top}.h").write_text(srcs["header"])
        (tmp / "tb.cpp").write_text(srcs["tb"])
        cmd = [
            cxx,
            *flags,
            "-I",
            str(inc),
            "-I",
            "firmware",
            "tb.cpp",
            f"firmware/{fw.top}.cpp",
            "-o",
            "csim",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if progress:
                    progress(f"g++ C simulation build: {time.perf_counter() - t0:.0f} s")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        log = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if proc.returncode != 0:
            tail = "\n".join(log.splitlines()[-20:])
            raise CSimError(
                f"g++ failed to compile the HLS C simulation (exit {proc.returncode}):\n{tail}"
            )
        secs = time.perf_counter() - t0
        final = root / key
        try:
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return final / "csim", secs, False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def csim(
    fw,
    ints: list[np.ndarray],
    progress=None,
    timeout: float | None = None,
    ap_types: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the C simulation on integer inputs (one array (N, count) per input port)."""
    exe, bsecs, cached = build_csim(fw, ap_types, progress)
    n = ints[0].shape[0]
    vals = [to_float(m, p.type).reshape(n, -1) for m, p in zip(ints, fw.inputs, strict=True)]
    data = np.concatenate(vals, axis=1).astype("<f8")
    raw, proc, rsecs = run_vectors(exe, data, n, "<i8", timeout, "C simulation", CSimError)
    if raw is None:
        raise CSimError(f"C simulation failed (exit {proc.returncode}): {proc.stderr.strip()}")
    counts = [p.count for p in fw.outputs]
    raw = raw.reshape(n, sum(counts))
    outs, off = [], 0
    for c in counts:
        outs.append(raw[:, off : off + c])
        off += c
    return {"outputs": outs, "build_seconds": bsecs, "run_seconds": rsecs, "cached": cached}


__all__ = ["CSimError", "build_csim", "csim", "write_hls"]
