"""Several servers behind one client: spread, failover, nothing lost."""

import asyncio
import time

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


def test_health_checks_take_out_and_bring_back_a_server(repo):
    import subprocess
    import sys

    from lightspeed.client import SonicClient
    from tests.scale.servers import wait_ready

    d, q, jets = repo

    async def run(servers):
        port = servers[1][0].rsplit(":", 1)[1]
        async with SonicClient([a for a, _ in servers], "jet", health_interval_s=0.2) as c:
            assert await c.check_health() == [True, True]
            servers[1][1].terminate()
            servers[1][1].wait(timeout=15)
            await asyncio.sleep(0.6)  # the background probe notices before any request fails
            assert not c.endpoints[1].available(time.monotonic())
            out = await c.infer_event(jets[:8])
            assert c.stats.retries == 0  # the dead server was never tried
            cmd = [sys.executable, "-m", "lightspeed.cli", "serve", str(d / "repo"), "--grpc-port", port,
                   "--http-port", "-1", "--metrics-port", "-1", "--log-level", "WARNING"]  # fmt: skip
            revived = subprocess.Popen(cmd)
            try:
                await asyncio.to_thread(wait_ready, f"127.0.0.1:{port}")
                # back in rotation once the channel has reconnected (bounded: on a loaded
                # machine that takes more than one probe interval)
                deadline = time.monotonic() + 10
                while (health := await c.check_health()) != [True, True]:
                    assert time.monotonic() < deadline, health
                    await asyncio.sleep(0.2)
            finally:
                revived.terminate()
                revived.wait(timeout=15)
            return out

    with serve(d / "repo", n=2) as servers:
        out = asyncio.run(run(servers))
    assert np.array_equal(out[q.output_names[0]], q.predict(jets[:8]))
