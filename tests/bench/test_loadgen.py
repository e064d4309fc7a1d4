"""MLPerf LoadGen scenarios: settings, validity, accuracy check, bad input."""

from __future__ import annotations

import json
import socket
import sys
import time

import numpy as np
import pytest

from lightspeed.bench._targets import ServerUnreachableError, parse_target
from lightspeed.bench.loadgen import (
    LoadgenConfig,
    accuracy_check,
    invalid_reason,
    markdown_table,
    read_detail_log,
    run_loadgen,
)
from lightspeed.errors import ConfigError, ToolMissingError


def _short(scenario: str, target: str, outdir, **kw) -> LoadgenConfig:
    # Quick but valid runs: 1 s minimum duration, 600 jets, a generous Server latency bound.
    base = dict(
        scenario=scenario,
        target=target,
        outdir=outdir,
        count=600,
        performance_sample_count=600,
        min_duration_ms=1000,
        target_latency_ms=1000.0,  # validity must not hinge on a busy machine's stalls
    )
    if scenario == "server":
        base["min_query_count"] = 600  # early stopping on p99 needs > 459 queries
    return LoadgenConfig(**{**base, **kw})


def _check_valid_run(summary: dict, outdir) -> None:
    perf, acc = summary["performance"], summary["accuracy"]
    assert perf["validity"] == "VALID", (
        perf["invalid_reason"],
        perf["retried"],
        perf["latency_ms"],
    )
    assert perf["invalid_reason"] == ""
    assert perf["samples_per_second"] > 0
    assert perf["sut_error_count"] == 0
    lat = perf["latency_ms"]
    assert 0 < lat["p50.00"] <= lat["p90.00"] <= lat["p99.00"] <= lat["max"]
    # LoadGen's own logs are kept.
    for mode in ("performance", "accuracy"):
        assert (outdir / mode / "mlperf_log_summary.txt").exists()
        assert (outdir / mode / "mlperf_log_detail.txt").exists()
    assert "Result is : VALID" in (outdir / "performance" / "mlperf_log_summary.txt").read_text()
    # Accuracy mode saw every QSL sample once and the quantized model is within 99% of float.
    assert acc["samples"] == summary["qsl_samples"] == 600
    assert acc["passed"] is True
    assert acc["accuracy_fixed"] >= 0.99 * acc["accuracy_float"]
    assert acc["argmax_agreement"] > 0.95
    assert json.loads((outdir / "summary.json").read_text())["scenario"] == summary["scenario"]


@pytest.mark.parametrize("scenario", ["server", "offline"])
def test_inprocess_short_valid_run(scenario, compiled_tagger, tmp_path):
    summary = run_loadgen(_short(scenario, f"inprocess:{compiled_tagger}", tmp_path))
    _check_valid_run(summary, tmp_path)
    assert summary["target_kind"] == "inprocess"


@pytest.mark.parametrize("scenario", ["server", "offline"])
def test_live_server_short_valid_run(scenario, live_server, tmp_path):
    summary = run_loadgen(_short(scenario, live_server.target("tagger_fixed"), tmp_path))
    _check_valid_run(summary, tmp_path)
    assert summary["target_kind"] == "grpc"


def test_served_outputs_match_inprocess(compiled_tagger, live_server):
    """The accuracy check reads what the server returned: it must be the emulator's answer."""
    from lightspeed.bench._targets import open_target

    x = np.random.default_rng(0).normal(0, 1, (37, 16)).astype(np.float32)
    local = open_target(f"inprocess:{compiled_tagger}")
    remote = open_target(live_server.target("tagger_fixed"))
    try:
        assert np.array_equal(local.infer(x), remote.infer(x))
    finally:
        remote.close()


def test_accuracy_check_definition():
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    ref = np.eye(5)[labels]  # float reference: 100% correct
    out = ref.copy()
    out[0] = np.eye(5)[1]  # target: one mistake -> 90%
    r = accuracy_check(out, ref, labels)
    assert r["accuracy_float"] == 1.0 and r["accuracy_fixed"] == 0.9
    assert r["ratio"] == pytest.approx(0.9)
    assert r["passed"] is False
    assert r["argmax_agreement"] == 0.9
    assert accuracy_check(ref, ref, labels)["passed"] is True


def test_detail_log_and_invalid_reason(tmp_path):
    lines = [
        ':::MLLOG {"key": "result_validity", "value": "INVALID", "metadata": {}}',
        ':::MLLOG {"key": "result_min_duration_met", "value": false, "metadata": {}}',
        ':::MLLOG {"key": "result_invalid_reason", "value": "Increase expected QPS", "metadata": {}}',
        "not a log line",
    ]
    path = tmp_path / "mlperf_log_detail.txt"
    path.write_text("\n".join(lines))
    detail = read_detail_log(path)
    assert detail["result_validity"] == "INVALID"
    reason = invalid_reason(detail, "offline")
    assert "minimum duration not met" in reason and "Increase expected QPS" in reason
    assert invalid_reason({"result_validity": "VALID"}, "server") == ""


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"scenario": "batch"}, "scenario 'batch' is unknown"),
        ({"mode": "fast"}, "mode 'fast' is unknown"),
        ({"min_duration_ms": 10}, "at least 100 ms"),
        ({"scenario": "offline", "target_qps": 100.0}, "server scenario only"),
        ({"scenario": "server", "expected_qps": 100.0}, "offline scenario only"),
        ({"scenario": "server", "target_qps": -5.0}, "--target-qps must be > 0"),
        ({"samples_per_query": 0}, "--samples-per-query"),
    ],
)
def test_invalid_parameters_are_explained(kw, message, tmp_path):
    cfg = LoadgenConfig(**{"target": "inprocess:x", "outdir": tmp_path, **kw})
    with pytest.raises(ConfigError, match=message):
        run_loadgen(cfg)


@pytest.mark.parametrize(
    "text", ["grpc://host/model", "http://h:1/m", "inprocess:", "grpc://h:99999/m"]
)
def test_bad_targets(text):
    with pytest.raises(ConfigError):
        parse_target(text)


def test_target_parsing():
    t = parse_target("grpc://127.0.0.1:8001/jet_tagger")
    assert (t.kind, t.host, t.port, t.model) == ("grpc", "127.0.0.1", 8001, "jet_tagger")
    assert str(t) == "grpc://127.0.0.1:8001/jet_tagger"
    assert parse_target("inprocess:some/dir").path == "some/dir"


def test_unreachable_server_fails_fast_with_address(tmp_path):
    pytest.importorskip("tritonclient.grpc")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = LoadgenConfig(
        scenario="offline",
        target=f"grpc://127.0.0.1:{port}/m",
        outdir=tmp_path,
        count=100,
        timeout_s=1.0,
    )
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}"):
        run_loadgen(cfg)
    assert time.monotonic() - t0 < 30  # bounded: fails at the connection timeout


def test_missing_loadgen_gives_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)
    with pytest.raises(ToolMissingError, match=r"pip install 'lightspeed\[bench\]'"):
        run_loadgen(LoadgenConfig(target="inprocess:x", outdir=tmp_path))


def test_markdown_table_rows():
    s = {
        "scenario": "offline",
        "target_kind": "grpc",
        "performance": {
            "samples_per_second": 1234.5,
            "validity": "VALID",
            "invalid_reason": "",
            "latency_ms": {"p50.00": 1.0, "p90.00": 2.0, "p99.00": 3.0},
        },
        "accuracy": {"accuracy_fixed": 0.7, "accuracy_float": 0.7, "passed": True},
    }
    table = markdown_table([s])
    assert "| offline | grpc | 1,234 |" in table and "pass" in table


def test_cli_rejects_bad_scenario_parameters(capsys, tmp_path):
    from lightspeed.cli import main

    code = main(
        [
            "bench",
            "loadgen",
            "--scenario",
            "offline",
            "--target",
            "inprocess:x",
            "--target-qps",
            "10",
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "--target-qps applies to the server scenario only" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ten_input_model(tmp_path_factory):
    """A user's own model: 10 inputs, 3 classes (not the jet tagger's 16 features)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import lightspeed

    rng = np.random.default_rng(5)
    w1, b1 = rng.normal(0, 0.4, (10, 12)).astype(np.float32), np.zeros(12, np.float32)
    w2, b2 = rng.normal(0, 0.4, (12, 3)).astype(np.float32), np.zeros(3, np.float32)
    g = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"]),
        ],
        "user",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    d = tmp_path_factory.mktemp("user")
    onnx.save(m, str(d / "m.onnx"))
    x = rng.normal(size=(700, 10)).astype(np.float32)
    q = lightspeed.quantize(lightspeed.load(str(d / "m.onnx")), "auto", calibration=x)
    q.save(d / "compiled")
    h = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", h.argmax(1))  # labels the float model gets right
    return d


def test_user_model_with_user_data_and_labels(ten_input_model, tmp_path):
    d = ten_input_model
    cfg = _short(
        "offline",
        f"inprocess:{d / 'compiled'}",
        tmp_path,
        data=str(d / "x.npy"),
        labels=str(d / "y.npy"),
    )
    s = run_loadgen(cfg)
    assert s["data"] == str(d / "x.npy") and s["qsl_samples"] == 600
    assert s["performance"]["validity"] == "VALID"
    acc = s["accuracy"]
    assert acc["accuracy_float"] == 1.0 and acc["passed"] is True


def test_user_model_with_synthetic_inputs(ten_input_model, tmp_path, capsys):
    from lightspeed.cli import main

    d = ten_input_model
    out = tmp_path / "syn"
    argv = ["bench", "loadgen", "--scenario", "offline", "--target", f"inprocess:{d / 'compiled'}"]
    argv += ["--synthetic", "--count", "600", "--min-duration-ms", "1000", "-o", str(out)]
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["data"] == "synthetic N(0,1) inputs of shape [10]"
    assert s["accuracy"]["measured"] is False and "not measured" in s["accuracy"]["note"]
    assert "not measured" in capsys.readouterr().out


def test_user_model_on_the_default_jets_says_what_to_do(ten_input_model, tmp_path):
    from lightspeed.errors import InputError

    cfg = _short("offline", f"inprocess:{ten_input_model / 'compiled'}", tmp_path)
    with pytest.raises(InputError, match=r"shape \[10\].*--data X.npy.*--synthetic"):
        run_loadgen(cfg)


def test_loadgen_help_has_no_doubled_percent(capsys):
    from lightspeed.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "loadgen", "--help"])
    text = capsys.readouterr().out
    assert "99% of FP32" in text and "%%" not in text
