"""Firmware: Verilog / HLS generation, Verilator simulation, Yosys synthesis, analytic estimate.

::

    from lightspeed import firmware
    fw = firmware.generate(q, "fw/", target="verilog", clock_period=5.0)
    Y, latency, ii = firmware.simulate("fw/", X)        # Verilator, one vector per clock
    report = firmware.synthesize("fw/", part="xcvu9p")    # Yosys synth_xilinx
    est = firmware.estimate(q)                            # instant analytic LUT/FF/DSP

Every result is bit-exact with the emulator (``q.predict``); ``check`` proves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lightspeed.errors import InputError

# load the submodule first: otherwise its later import would shadow the estimate() function
from lightspeed.firmware import estimate as _estimate_module  # noqa: F401
from lightspeed.firmware.config import FirmwareOptions, parse_clock
from lightspeed.firmware.parts import get_part
from lightspeed.firmware.project import FirmwareDir, load_fwdir
from lightspeed.firmware.project import generate as _generate


def generate(
    q,
    outdir: str | Path,
    target: str = "verilog",
    clock_period: float | str = 5.0,
    multipliers: str = "auto",
    top: str = "lightspeed_top",
    overwrite: bool = True,
    part: str | None = "xcvu9p",
    force: bool = False,
    io: str = "parallel",
    reuse: int | Mapping[str, int] = 1,
) -> FirmwareDir:
    """Write Verilog (``target="verilog"``) or a Vitis HLS project (``"hls"``) for ``q``.

    First a graph-level estimate (:mod:`lightspeed.firmware.fit`, well under a second)
    checks the design against ``part``; one that cannot fit raises ``ConfigError`` with
    the numbers and the ways out, unless ``force`` (or ``part=None``). ``io="stream"``
    streams convolutions one pixel per clock through line buffers
    (:mod:`lightspeed.firmware.verilog.stream`; Verilog only).

    ``reuse``: a reuse factor for every dense layer, or ``{layer: factor}`` (layers not
    named keep the node attribute ``reuse`` from the compile config, else 1); see
    :mod:`lightspeed.firmware.reuse`.
    """
    opts = _options(clock_period, multipliers, io, reuse, top=top)
    if part is not None and not force:
        from lightspeed.firmware.fit import (
            quick_estimate,
            refusal,
            stream_alternative,
            suggest_reuse,
        )

        report = quick_estimate(q, get_part(part), opts)
        if not report.fits:
            raise refusal(
                report,
                stream=stream_alternative(q, get_part(part), opts),
                reuse=suggest_reuse(q, get_part(part), opts),
            )
    return _generate(q, outdir, target=target, options=opts, overwrite=overwrite)


def _options(clock_period, multipliers: str, io: str, reuse, **kw) -> FirmwareOptions:
    from lightspeed.errors import ConfigError

    if io == "stream" and reuse != 1:
        raise ConfigError(
            "a reuse factor together with --io stream is not implemented: streaming already "
            "shares one datapath per conv layer; use one or the other"
        )
    return FirmwareOptions(
        clock_period=parse_clock(clock_period),
        multipliers=multipliers,
        io=io,
        **reuse_options(reuse),
        **kw,
    )


def reuse_options(reuse: int | Mapping[str, int]) -> dict[str, Any]:
    """``FirmwareOptions`` fields for a global factor or a per-layer mapping."""
    if isinstance(reuse, Mapping):
        return {"layer_reuse": tuple(sorted(reuse.items()))}
    return {"reuse": reuse}


def _as_inputs(fw: FirmwareDir, X) -> dict[str, np.ndarray]:
    ports = fw.inputs
    if not isinstance(X, Mapping):
        if len(ports) != 1:
            raise InputError(
                f"the design has inputs {[p.tensor for p in ports]}; pass a dict of arrays"
            )
        X = {ports[0].tensor: X}
    out = {}
    for p in ports:
        if p.tensor not in X:
            raise InputError(
                f"missing input {p.tensor!r}; the design's inputs are {[q.tensor for q in ports]}"
            )
        a = np.asarray(X[p.tensor])
        if a.dtype.kind not in "fiub":
            raise InputError(f"input {p.tensor!r} has dtype {a.dtype}; give numbers")
        if a.ndim >= 1 and tuple(a.shape) == tuple(p.shape):
            a = a[None]
        if tuple(a.shape[1:]) != tuple(p.shape):
            raise InputError(
                f"input {p.tensor!r} has shape {a.shape}; the firmware expects (batch, "
                f"{', '.join(map(str, p.shape))}) = {p.count} values of {p.type} per vector"
            )
        out[p.tensor] = a
    return out


def simulate_detail(
    fwdir: str | Path | FirmwareDir,
    X,
    progress=None,
    timeout: float | None = None,
    ap_types=None,
    stall: int = 0,
) -> dict[str, Any]:
    """Run the RTL (Verilator) or the HLS C simulation (g++) on float inputs ``X``.

    Returns ``{"outputs": {tensor: float array}, "ints": {tensor: int array},
    "latency": cycles or None, "ii": float or None, "build_seconds", "run_seconds", "cached"}``.
    A streaming design (``io="stream"``) is fed pixel by pixel; its ``latency`` counts from
    an image's first beat to its result and ``ii`` is cycles per image; ``stall > 0`` idles
    the input every ``stall``-th cycle (the valid-only interface must tolerate gaps).
    """
    from lightspeed.fixed import quantize_float, to_float

    fw = fwdir if isinstance(fwdir, FirmwareDir) else load_fwdir(fwdir)
    xs = _as_inputs(fw, X)
    ints = [
        quantize_float(xs[p.tensor], p.type, what=f"input {p.tensor!r}").reshape(-1, p.count)
        for p in fw.inputs
    ]
    if fw.target == "hls":
        from lightspeed.firmware.hls import csim

        res = csim(fw, ints, progress=progress, timeout=timeout, ap_types=ap_types)
        outs, lat, ii = res["outputs"], None, None
        extra = {k: res[k] for k in ("build_seconds", "run_seconds", "cached")}
    elif fw.manifest.get("stream"):
        outs, lat, ii, extra = _simulate_stream(fw, ints, progress, timeout, stall)
    else:
        from lightspeed.firmware.sim import PortSpec, simulate_verilog

        ins = [PortSpec(p.port, p.type.width, p.count, p.type.signed) for p in fw.inputs]
        os_ = [PortSpec(p.port, p.type.width, p.count, p.type.signed) for p in fw.outputs]
        r = simulate_verilog(
            fw.read("rtl"), fw.top, ins, os_, ints, progress=progress, timeout=timeout, ii=fw.ii
        )
        outs, lat, ii = r.outputs, r.latency, r.ii
        extra = {"build_seconds": r.build_seconds, "run_seconds": r.run_seconds, "cached": r.cached}
    n = ints[0].shape[0]
    ints_d = {
        p.tensor: np.asarray(o).reshape(n, *p.shape) for p, o in zip(fw.outputs, outs, strict=True)
    }
    floats = {p.tensor: to_float(ints_d[p.tensor], p.type) for p in fw.outputs}
    return {"outputs": floats, "ints": ints_d, "latency": lat, "ii": ii, **extra}


def _simulate_stream(fw: FirmwareDir, ints, progress, timeout, stall: int):
    """Verilator on a streaming design: images in as pixel beats, results per image (or pixel)."""
    from lightspeed.firmware.sim import PortSpec, simulate_verilog
    from lightspeed.firmware.verilog.stream import from_beats, to_beats

    info = fw.manifest["stream"]
    (pin,), (pout,) = fw.inputs, fw.outputs
    n = ints[0].shape[0]
    beats = to_beats(ints[0], pin.shape)
    ins = [PortSpec(pin.port, pin.type.width, beats.shape[1], pin.type.signed)]
    per = int(info["pixels_out"])
    count = pout.count // per
    os_ = [PortSpec(pout.port, pout.type.width, count, pout.type.signed)]
    r = simulate_verilog(
        fw.read("rtl"), fw.top, ins, os_, [beats], progress, timeout, n_out=n * per, stall=stall
    )
    out = r.outputs[0]
    out = out.reshape(n, -1) if per == 1 else from_beats(out, n, pout.shape).reshape(n, -1)
    ii = r.ii * per  # simulate_verilog measures per result (pixels out: the mean per image)
    extra = {"build_seconds": r.build_seconds, "run_seconds": r.run_seconds, "cached": r.cached}
    return [out], r.latency, ii, extra


def simulate(
    fwdir: str | Path | FirmwareDir, X, progress=None
) -> tuple[Any, int | None, float | None]:
    """``(Y, latency_cycles, ii)``: Y is an array for one output, else a dict of arrays."""
    r = simulate_detail(fwdir, X, progress=progress)
    ys = r["outputs"]
    y = next(iter(ys.values())) if len(ys) == 1 else ys
    return y, r["latency"], r["ii"]


def check(
    fwdir: str | Path | FirmwareDir,
    X,
    q=None,
    progress=None,
    show: int = 5,
    ap_types=None,
    stall: int = 0,
) -> dict[str, Any]:
    """Simulate and compare bit for bit with the emulator; ``mismatches`` lists the first few."""
    fw = fwdir if isinstance(fwdir, FirmwareDir) else load_fwdir(fwdir)
    if q is None:
        q = fw.model()
    else:
        fw.check_model(q)
    r = simulate_detail(fw, X, progress=progress, ap_types=ap_types, stall=stall)
    ref = q.run(_as_inputs(fw, X))
    mismatches: list[dict[str, Any]] = []
    total_bad = 0
    for p in fw.outputs:
        got, want = np.asarray(r["ints"][p.tensor]), np.asarray(ref[p.tensor].m)
        bad = np.argwhere(got.reshape(got.shape[0], -1) != want.reshape(want.shape[0], -1))
        total_bad += len(bad)
        for row, col in bad[: max(show - len(mismatches), 0)]:
            mismatches.append(
                {
                    "output": p.tensor,
                    "vector": int(row),
                    "element": int(col),
                    "firmware": int(got.reshape(got.shape[0], -1)[row, col]),
                    "emulator": int(want.reshape(want.shape[0], -1)[row, col]),
                    "type": str(p.type),
                }
            )
    r["mismatched_values"] = total_bad
    r["mismatches"] = mismatches
    r["exact"] = total_bad == 0
    r["vectors"] = int(next(iter(r["ints"].values())).shape[0])
    return r


def synthesize(
    fwdir: str | Path | FirmwareDir,
    part: str = "xcvu9p",
    timeout: float | None = None,
    progress=None,
    **kw: Any,
):
    """Yosys ``synth_xilinx`` report (LUT/FF/DSP/CARRY/BRAM, % of ``part``, latency in ns)."""
    from lightspeed.firmware.synth import synthesize as _synth

    return _synth(fwdir, part=part, timeout=timeout, progress=progress, **kw)


def estimate(
    q,
    clock_period: float | str = 5.0,
    multipliers: str = "auto",
    part: str | None = None,
    io: str = "parallel",
    reuse: int | Mapping[str, int] = 1,
):
    """Instant analytic estimate for a quantized model (no files, no tools).

    ``io="stream"``: per stage one datapath plus its line buffers, the streamed dense and
    the parallel tail (:func:`lightspeed.firmware.verilog.stream.estimate_stream`).
    """
    from lightspeed.firmware.estimate import estimate_design
    from lightspeed.firmware.verilog import build_design

    opts = _options(clock_period, multipliers, io, reuse)
    if io == "stream":
        from lightspeed.firmware.verilog.stream import build_stream, estimate_stream

        return estimate_stream(build_stream(q, opts))
    d = build_design(q, opts)
    est = estimate_design(d)
    return est


def demo_step(
    q, workdir: str | Path, console=None, X=None, n_vectors: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """What ``lightspeed demo`` does after emulation: Verilog, bit-exact RTL sim, latency, estimate."""
    from lightspeed.firmware.tools import find_verilator

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg)

    workdir = Path(workdir)
    fw = generate(q, workdir / "firmware", target="verilog")
    est = fw.manifest.get("estimate", {})
    part = get_part("xcvu9p")
    out: dict[str, Any] = {
        "fwdir": str(fw.path),
        "latency_cycles": fw.latency,
        "latency_ns": fw.latency * fw.clock_period,
        "clock_period_ns": fw.clock_period,
        "estimate": {k: est.get(k) for k in ("lut", "ff", "dsp", "carry")},
        "estimate_per_layer": est.get("per_layer", {}),
        "part": {
            "name": part.name,
            "description": part.description,
            "lut": part.lut,
            "ff": part.ff,
            "dsp": part.dsp,
        },
    }
    say(
        f"firmware: Verilog in {fw.path}/rtl ({fw.latency} cycles = {fw.latency * fw.clock_period:g} ns "
        f"at {1000 / fw.clock_period:.0f} MHz, II={fw.ii})"
    )
    say(f"estimate: ~{est.get('lut', 0)} LUT, {est.get('ff', 0)} FF, {est.get('dsp', 0)} DSP")
    try:
        find_verilator()
    except Exception as exc:  # missing tool: report, do not fail the demo
        out["simulation"] = {"skipped": str(exc)}
        say(f"RTL simulation skipped: {exc}")
        return out
    if X is None:
        rng = np.random.default_rng(seed)
        X = {}
        for p in fw.inputs:
            lo, hi = p.type.min_value, p.type.max_value
            X[p.tensor] = rng.uniform(lo, hi, (n_vectors, *p.shape))
    if len(X) == 1:  # what `lightspeed sim --input` takes to reproduce the check
        np.save(workdir / "rtl_vectors.npy", next(iter(X.values())))
    r = check(fw, X, q=q)
    out["simulation"] = {
        "vectors": r["vectors"],
        "exact": r["exact"],
        "mismatched_values": r["mismatched_values"],
        "latency_cycles": r["latency"],
        "ii": r["ii"],
        "build_seconds": round(r["build_seconds"], 1),
        "vectors_source": "uniform random over the input type's range",
    }
    say(
        f"RTL simulation (Verilator): {r['vectors']} vectors, "
        f"{'bit-exact with the emulator' if r['exact'] else str(r['mismatched_values']) + ' MISMATCHES'}, "
        f"latency {r['latency']} cycles, II {r['ii']:.2f}"
    )
    return out


__all__ = [
    "FirmwareDir", "FirmwareOptions", "check", "demo_step", "estimate", "generate", "load_fwdir",
    "simulate", "simulate_detail", "synthesize",
]  # fmt: skip
