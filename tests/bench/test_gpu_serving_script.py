"""benchmarks/gpu_serving.py stays runnable on CPU machines (its GPU half needs CUDA)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_serving.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_serving", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_serving", module)
    spec.loader.exec_module(module)
    return module


def test_cpu_only_run_writes_checked_results(tmp_path):
    script = _script()
    argv = ["--cpu-only", "--duration", "0.3", "--concurrency", "2", "--batch", "8"]
    assert script.main([*argv, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_serving.json").read_text())
    assert result["kinds"] == ["cpu"] and (tmp_path / "gpu_serving.png").stat().st_size > 0
    assert {r["model"] for r in result["rows"]} == {"jet_mlp", "wide_mlp"}
    for r in result["rows"]:
        assert r["errors"] == 0 and r["requests"] > 0
        assert r["max_abs_err_vs_cpu_ort"] < 1e-4


def test_gpu_run_without_cuda_says_what_is_missing(tmp_path):
    script = _script()
    if script.gpu_status()["cuda_provider"]:
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit, match="CUDAExecutionProvider"):
        script.main(["--out", str(tmp_path)])
