"""Fixtures for the benchmark tests: a compiled jet tagger and a live server over it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip(
    "mlperf_loadgen", reason="needs mlcommons-loadgen: pip install 'lightspeed[bench]'"
)


@pytest.fixture(scope="session")
def compiled_tagger(tmp_path_factory) -> Path:
    """The zoo jet tagger at auto precision, calibrated on training jets (as the demo does)."""
    import lightspeed
    from lightspeed import zoo
    from lightspeed.data import load_default_jets

    train, _ = load_default_jets().split(test_fraction=0.25, seed=0)
    q = lightspeed.quantize(
        lightspeed.load(zoo.model_path("jet_tagger")),
        precision="auto",
        calibration=train.features[:2000],
    )
    return Path(q.save(tmp_path_factory.mktemp("compiled") / "jet_tagger"))


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, compiled_tagger):
    """`lightspeed serve` in a subprocess on a free 127.0.0.1 port; always stopped."""
    pytest.importorskip("tritonclient.grpc", reason="needs lightspeed[serve]")
    from lightspeed.bench._targets import ServerProcess
    from lightspeed.serve.repo_add import EntryOptions, add_model

    repo = tmp_path_factory.mktemp("repo")
    add_model(compiled_tagger, repo, "tagger_fixed", EntryOptions())
    server = ServerProcess(repo, log_file=repo / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None
