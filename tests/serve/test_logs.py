"""Server logs are logfmt (quoted where needed) or JSON lines with --log-format json."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lightspeed.serve.logs import JsonFormatter, LogfmtFormatter, kv
from lightspeed.serve.repo_add import EntryOptions, add_model

_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s="\\]*)(?:\s+|$)')


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict logfmt parser: the whole line must be key=value pairs."""
    out, pos = {}, 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        assert m, f"not logfmt at {pos}: {line!r}"
        key, value = m.groups()
        if value.startswith('"'):
            value = re.sub(
                r"\\(.)", lambda g: {"n": "\n", "t": "\t", "r": "\r"}.get(g[1], g[1]), value[1:-1]
            )
        out[key] = value
        pos = m.end()
    return out


def _record(msg: str, **fields) -> logging.LogRecord:
    rec = logging.LogRecord("lightspeed.serve", logging.INFO, __file__, 1, msg, None, None)
    rec.__dict__.update(kv(**fields))
    return rec


def test_logfmt_quotes_and_escapes():
    tricky = {"sp": "a b", "q": 'say "hi"', "eq": "k=v", "empty": "", "bs": "c:\\x", "nl": "a\nb"}
    line = LogfmtFormatter().format(
        _record("model loaded", model="bnmlp_emu", versions=[1, 2], **tricky)
    )
    assert "\n" not in line
    parsed = parse_logfmt(line)
    assert parsed["msg"] == "model loaded" and parsed["model"] == "bnmlp_emu"
    assert parsed["versions"] == "1,2" and parsed["level"] == "info"
    for k, v in tricky.items():
        assert parsed[k] == v
    j = json.loads(JsonFormatter().format(_record("model loaded", versions=[1, 2], **tricky)))
    assert j["msg"] == "model loaded" and j["versions"] == [1, 2] and j["q"] == 'say "hi"'


def _serve_lines(repo: Path, *extra: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightspeed.cli", "serve", str(repo), "--grpc-port", "0",
         "--http-port", "-1", "--metrics-port", "-1", *extra],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    started = threading.Event()

    def pump():
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "server started" in line:
                started.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        assert started.wait(60), lines
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        t.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lines


@pytest.fixture(scope="module")
def log_repo(tmp_path_factory, mlp_onnx):
    root = tmp_path_factory.mktemp("logrepo")
    add_model(mlp_onnx, root, "mlp", EntryOptions(max_batch_size=8))
    bad = root / "broken_config"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text('name: "broken_config"\nmax_batch_size: [oops\n')
    return root


def test_serve_logs_are_logfmt(log_repo):
    lines = _serve_lines(log_repo)
    records = [parse_logfmt(line) for line in lines]
    loaded = [r for r in records if r["msg"] == "model loaded"]
    assert loaded and loaded[0]["model"] == "mlp" and loaded[0]["versions"] == "1"
    failed = [r for r in records if r["msg"] == "model load failed"]
    assert failed[0]["model"] == "broken_config" and " " in failed[0]["error"]
    assert {"time", "level", "logger"} <= set(records[0])


def test_serve_log_format_json(log_repo):
    lines = _serve_lines(log_repo, "--log-format", "json")
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "msg"} <= set(r) for r in records)
    loaded = [r for r in records if r["msg"] == "model loaded"]
    assert loaded[0]["model"] == "mlp" and loaded[0]["versions"] == [1]
    assert any(r["msg"] == "server started" and r["grpc_port"] > 0 for r in records)


@pytest.mark.parametrize("flag", ["--grpc-port", "--http-port"])
def test_busy_port_fails_before_loading_models(log_repo, flag):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--http-port" if flag == "--grpc-port" else "--grpc-port"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        proc = subprocess.run(
            [sys.executable, "-m", "lightspeed.cli", "serve", str(log_repo), flag, str(port),
             other, "0", "--metrics-port", "-1"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2
    assert "model loaded" not in proc.stderr and "model load failed" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "in use" in errors[0]
    assert "Traceback" not in proc.stderr
