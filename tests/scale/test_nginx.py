"""N lightspeed servers behind Debian's nginx as a gRPC load balancer."""

import shutil
import subprocess
import time

import numpy as np
import pytest

import lightspeed
from lightspeed.data import load_default_jets
from lightspeed.deploy import nginx_grpc_config
from lightspeed.zoo import model_path
from tests.scale.servers import free_port, serve, wait_ready

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx not installed (apt-get install nginx-light)"
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("nginx")
    jets = load_default_jets().features[:500]
    q = lightspeed.quantize(lightspeed.load(model_path("jet_tagger")), "auto", calibration=jets)
    q.save(d / "compiled")
    from lightspeed.cli import main

    assert main(["repo", "add", str(d / "compiled"), str(d / "repo"), "--name", "jet"]) == 0
    return d, q, jets


def test_requests_spread_over_replicas_and_survive_one_dying(repo, tmp_path):
    import tritonclient.grpc as grpcclient

    d, q, jets = repo
    with serve(d / "repo", n=2) as servers:
        listen = f"127.0.0.1:{free_port()}"
        conf = tmp_path / "nginx.conf"
        conf.write_text(nginx_grpc_config([a for a, _ in servers], listen=listen, prefix=tmp_path))
        nginx = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(conf)])
        try:
            wait_ready(listen)
            client = grpcclient.InferenceServerClient(listen)
            want = q.predict(jets[:64])

            def infer(i):
                x = jets[i : i + 1].astype(np.float32)
                inp = grpcclient.InferInput(q.input_names[0], list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                return client.infer("jet", [inp]).as_numpy(q.output_names[0])

            got = [infer(i) for i in range(32)]
            counts = []
            for addr, _ in servers:
                c = grpcclient.InferenceServerClient(addr)
                stats = c.get_inference_statistics("jet", as_json=True)
                counts.append(int(stats["model_stats"][0]["inference_count"]))
            assert sum(counts) == 32 and min(counts) > 0  # both replicas served
            servers[0][1].terminate()
            servers[0][1].wait(timeout=15)
            time.sleep(0.2)
            got += [infer(i) for i in range(32, 64)]  # nginx moves to the live replica
            assert np.array_equal(np.concatenate(got), want)
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
