"""System shared memory (Triton's extension) with tritonclient's own shm helpers."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serve.serve_helpers import mlp_numpy

shm = pytest.importorskip("tritonclient.utils.shared_memory")


@pytest.fixture
def regions():
    x = np.random.default_rng(5).normal(size=(8, 16)).astype(np.float32)
    ins = shm.create_shared_memory_region("ls_in", "/ls_test_in", x.nbytes)
    outs = shm.create_shared_memory_region("ls_out", "/ls_test_out", 8 * 5 * 4)
    shm.set_shared_memory_region(ins, [x])
    yield x, ins, outs
    shm.destroy_shared_memory_region(ins)
    shm.destroy_shared_memory_region(outs)


@pytest.mark.parametrize("module", [grpcclient, httpclient])
def test_inputs_and_outputs_through_shared_memory(server, regions, module):
    x, _, outs = regions
    url = server.grpc_url if module is grpcclient else server.http_url
    c = module.InferenceServerClient(url)
    c.unregister_system_shared_memory()
    c.register_system_shared_memory("ls_in", "/ls_test_in", x.nbytes)
    c.register_system_shared_memory("ls_out", "/ls_test_out", 8 * 5 * 4)
    try:
        status = c.get_system_shared_memory_status()
        names = set(status.regions) if module is grpcclient else {r["name"] for r in status}
        assert names == {"ls_in", "ls_out"}
        i = module.InferInput("x", [8, 16], "FP32")
        i.set_shared_memory("ls_in", x.nbytes)
        o = module.InferRequestedOutput("y")
        o.set_shared_memory("ls_out", 8 * 5 * 4)
        result = c.infer("mlp", [i], outputs=[o])
        out = result.get_output("y")
        shape = list(out.shape) if module is grpcclient else out["shape"]
        assert shape == [8, 5]
        y = shm.get_contents_as_numpy(outs, np.float32, [8, 5])
        np.testing.assert_allclose(y, mlp_numpy(x), rtol=1e-5, atol=1e-6)
        # a region that is too small for the output is a clear INVALID_ARGUMENT
        o.set_shared_memory("ls_out", 16)
        with pytest.raises(InferenceServerException, match="needs 160 bytes"):
            c.infer("mlp", [i], outputs=[o])
        # an unknown region, and a key that does not exist
        i.set_shared_memory("nope", x.nbytes)
        with pytest.raises(InferenceServerException, match="'nope' is not registered"):
            c.infer("mlp", [i])
        with pytest.raises(InferenceServerException, match="does not exist"):
            c.register_system_shared_memory("bad", "/ls_no_such_key", 64)
        with pytest.raises(InferenceServerException, match="already registered"):
            c.register_system_shared_memory("ls_in", "/ls_test_in", x.nbytes)
        c.unregister_system_shared_memory()
        status = c.get_system_shared_memory_status()
        assert (len(status.regions) if module is grpcclient else len(status)) == 0
    finally:
        c.unregister_system_shared_memory()
        c.close()
