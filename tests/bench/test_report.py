"""The HTML report: collection, self-containment, demo hook, bad input."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from lightspeed.bench.demo_page import demo_report
from lightspeed.bench.report import collect, write_report
from lightspeed.errors import InputError


def _loadgen_summary(scenario: str, kind: str) -> dict:
    q = list(np.linspace(0.2, 3.0, 101))
    return {
        "kind": "loadgen",
        "scenario": scenario,
        "target": f"{kind}:x",
        "target_kind": kind,
        "performance": {
            "validity": "VALID",
            "invalid_reason": "",
            "samples_per_second": 5000.0,
            "latency_ms": {"p50.00": 0.5, "p90.00": 1.0, "p99.00": 2.5, "max": 3.0},
            "latency_quantiles_ms": q,
        },
        "accuracy": {"accuracy_fixed": 0.729, "accuracy_float": 0.730, "passed": True},
    }


def _sonic() -> dict:
    remote = [
        {
            "clients": n,
            "throughput_events_per_s": 300.0 * min(n, 4),
            "event_time_mean_s": 0.0033 * max(1, n / 4),
            "event_time_p99_s": 0.005 * max(1, n / 4),
            "infer_time_mean_s": 0.001,
        }
        for n in (1, 2, 4, 8)
    ]
    return {
        "kind": "sonic",
        "config": {"cpu_ms": 2.0, "work": "sleep", "mode": "sync", "batch": 1},
        "remote": remote,
        "local": [dict(r, throughput_events_per_s=280.0 * r["clients"]) for r in remote],
        "fit": {
            "t_cpu_s": 0.003,
            "p": 0.1,
            "t_gpu_s": 0.0008,
            "t_gpu_err_s": 0.0001,
            "t_latency_s": 0.0004,
            "t_latency_err_s": 0.0001,
            "t_ideal_s": 0.0039,
            "n_gpu": 1,
            "n_saturation": 4.9,
            "server_capacity_per_s": 1250.0,
        },
        "speedup_vs_local": {"1": 1.07, "2": 1.07, "4": 1.07, "8": 0.54},
        "max_throughput": {"clients": 4, "events_per_s": 1200.0},
        "sustains_clients": 4,
    }


def _demo() -> dict:
    return {
        "compile": {"model": "jet_tagger.onnx", "accuracy_float": 0.7298, "accuracy_fixed": 0.7291},
        "firmware": {
            "latency_cycles": 11,
            "clock_period_ns": 5.0,
            "estimate": {"lut": 1234, "ff": 567, "dsp": 89, "carry": 10},
            "simulation": {"vectors": 100, "exact": True},
        },
    }


@pytest.fixture
def results_dir(tmp_path):
    root = tmp_path / "results"
    for scenario, kind in (("server", "inprocess"), ("offline", "grpc")):
        d = root / "loadgen" / f"{scenario}_{kind}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(_loadgen_summary(scenario, kind)))
        (d / "mlperf_log_accuracy.json").write_text("[]")  # LoadGen's own logs are skipped
    (root / "sonic").mkdir()
    (root / "sonic" / "sonic.json").write_text(json.dumps(_sonic()))
    (root / "demo_results.json").write_text(json.dumps(_demo()))
    (root / "notes.json").write_text("[1, 2]")  # unrelated JSON is ignored
    serving = {
        "benchmark": "serving",
        "rows": [
            {"server": "lightspeed", "workload": "mlp", "batching": b, "concurrency": c,
             "throughput_rps": 100.0 * c, "p50_ms": 1.0, "p99_ms": 2.0}
            for b in ("on", "off") for c in (1, 4, 16)
        ],
    }  # fmt: skip
    (root / "serving.json").write_text(json.dumps(serving))
    return root


def test_collect_classifies(results_dir):
    res = collect(results_dir)
    assert len(res.loadgen) == 2 and len(res.sonic) == 1 and len(res.demo) == 1
    assert len(res.serving) == 1


def test_report_is_self_contained(results_dir, tmp_path):
    out = write_report(results_dir, tmp_path / "out" / "report.html")
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # Every image is embedded; nothing is loaded from elsewhere.
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    alts = {a for a, _ in images}
    assert {"latency CDFs", "throughput vs concurrency", "capacity curve"} <= alts
    assert "accuracy float vs fixed" in alts
    import base64

    for _, b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(http|//|file:)', text)
    # Tables carry the numbers.
    assert "MLPerf LoadGen scenarios" in text and "SONIC capacity study" in text
    assert "Demo run" in text and "LUT (estimate)" in text and "1,234" in text
    assert "sustains about <b>4</b> clients" in text


def test_demo_report(results_dir):
    out = demo_report(results_dir)
    text = out.read_text()
    assert out == results_dir / "report.html" and "by <code>lightspeed demo" in text
    assert "bench report" not in text  # the user ran demo
    assert "1,234" in text and "9 cycles" not in text and "11 cycles = 55 ns" in text


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A real ``lightspeed demo`` run (compile + emulation; firmware is tested elsewhere)."""
    from rich.console import Console

    from lightspeed.demo import run_demo

    work = tmp_path_factory.mktemp("demo")
    run_demo(work, firmware=False, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    return work


def test_demo_page_is_a_report_for_people(demo_run):
    results = json.loads((demo_run / "demo_results.json").read_text())
    text = (demo_run / "report.html").read_text()
    # per-layer table with the terminal's columns, every layer of the model
    for col in ("types", "mults", "BOPs", "max |float-fixed|"):
        assert col in text
    for layer in results["compile"]["report"]["layers"]:
        assert f">{layer['name']}<" in text
    # human labels, not JSON keys; the data the error is measured on is named
    for key in ("emulation_rate_per_s", "accuracy_fixed", "max_abs_error", "exact: yes"):
        assert key not in text
    assert f"{results['compile']['test_jets']:,} test jets" in text
    # every number has the command that reproduces it, and the commands work as printed
    for verb in ("compile", "report", "predict"):
        assert results["commands"][verb] in text.replace("&#x27;", "'")
    assert "--calibration" in results["commands"]["compile"]
    assert (demo_run / "calibration.npy").exists() and (demo_run / "test_inputs.npy").exists()


def test_demo_page_resources_against_the_part():
    from lightspeed.bench.demo_page import render_demo

    fw = {
        "latency_cycles": 9, "clock_period_ns": 5.0,
        "estimate": {"lut": 11_822, "ff": 100, "dsp": 68},
        "part": {"name": "xcvu9p", "description": "VU9P", "lut": 1_182_240, "ff": 2_364_480,
                 "dsp": 6_840},
        "simulation": {"vectors": 10, "exact": True, "ii": 1.0},
    }  # fmt: skip
    text = render_demo({"compile": {"model": "m"}, "firmware": fw})
    assert "1.00%" in text and "0.99%" in text  # LUT and DSP utilisation of the part
    assert 'style="width:1.00%"' in text  # the utilisation bar
    assert "45 ns" in text and "every output bit equals the emulator" in text


def test_demo_page_renders_in_headless_chromium(demo_run, tmp_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
         f"--screenshot={shot}", (demo_run / "report.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[:2] == (1600, 1200)
    assert img[..., :3].std() > 0.05  # not a blank page: text, tables and the chart drew


def test_report_bad_input(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_report(tmp_path / "missing", tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no results"):
        write_report(tmp_path / "empty", tmp_path / "r.html")
    with pytest.raises(InputError, match=r"demo_results\.json"):
        demo_report(tmp_path / "empty")


def test_cli_report(results_dir, tmp_path, capsys):
    from lightspeed.cli import main

    assert main(["bench", "report", str(results_dir), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert "report written" in capsys.readouterr().out


def test_demo_page_shows_the_trigger_tagger_next_to_the_reference():
    from lightspeed.bench.demo_page import render_demo
    from lightspeed.demo import HLS4ML_REFERENCE

    trigger = {
        "accuracy_fixed": 0.7203, "test_jets": 6250, "latency_cycles": 8, "latency_ns": 40.0,
        "estimate": {"lut": 22600, "ff": 2492, "dsp": 10}, "weight_sparsity": [0.7, 0.7],
        "types": {"weights": "ap_fixed<6,1,RND,SAT>", "relu": "ap_ufixed<6,2,RND,SAT>"},
        "reference": HLS4ML_REFERENCE,
    }  # fmt: skip
    text = render_demo({"compile": {"model": "m"}, "trigger": trigger, "commands": {
        "trigger": "lightspeed compile q6.onnx --precision trained -o out"}})  # fmt: skip
    assert "6-bit QAT, 70% pruned" in text and "8 cycles = 40 ns" in text
    assert "22,600" in text and "~11,800" in text and "Coelho" in text
    assert "--precision trained" in text and "70%, 70%" in text
