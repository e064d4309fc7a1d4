"""Several servers behind one client: spread, failover, nothing lost."""

import asyncio

import numpy as np
import pytest

import lightspeed
from lightspeed.data import load_default_jets
from lightspeed.zoo import model_path
from tests.scale.servers import serve


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi")
    jets = load_default_jets().features[:2000]
    q = lightspeed.quantize(
        lightspeed.load(model_path("jet_tagger")), "auto", calibration=jets[:500]
    )
    q.save(d / "compiled")
    from lightspeed.cli import main

    assert main(["repo", "add", str(d / "compiled"), str(d / "repo"), "--name", "jet"]) == 0
    return d, q, jets


def test_server_killed_mid_run_loses_nothing(repo):
    from lightspeed.client import SonicClient

    d, q, jets = repo
    events = [jets[i : i + 5] for i in range(0, 1000, 5)]  # 200 events of 5 jets

    async def run(servers):
        async with SonicClient([a for a, _ in servers], "jet", retries=4, cooldown_s=5.0) as c:
            first = await c.infer_events(events[:100])
            per_server = [s["model_stats"][0]["inference_count"] for s in await c.statistics()]
            servers[0][1].terminate()  # one replica dies mid-run
            servers[0][1].wait(timeout=15)
            rest = await c.infer_events(events[100:])
            return first + rest, per_server, c.stats

    with serve(d / "repo", n=2) as servers:
        results, per_server, stats = asyncio.run(run(servers))
    got = np.concatenate([r[q.output_names[0]] for r in results])
    assert np.array_equal(got, q.predict(jets[:1000]))  # every event answered, in order, bit-exact
    assert all(int(n) > 0 for n in per_server)  # load was spread before the failure
    assert stats.fallback_events == 0 and stats.failures == 0


def test_dask_partitions_through_two_servers(repo):
    import dask.array as da

    from lightspeed.dask import predict_array

    d, q, jets = repo
    with serve(d / "repo", n=2) as servers:
        spec = "grpc://" + ",".join(a for a, _ in servers) + "/jet"
        x = da.from_array(jets, chunks=(250, 16))
        got = predict_array(x, spec).compute(scheduler="threads", num_workers=2)
    assert np.array_equal(got, q.predict(jets))
