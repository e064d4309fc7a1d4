"""CUDA shared memory (Triton's extension) through the real tritonclient.

The protocol, registry and copies are tested against a stand-in CUDA runtime
(host buffers behind fake IPC handles), because CI has no GPU; the last test
runs the real CUDA IPC path with tritonclient's own helpers where a GPU and
cuda-python are present, and skips otherwise.
"""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from lightspeed.serve.cuda_shm import HANDLE_SIZE, CudaRuntime
from lightspeed.serve.errors import ServeError
from lightspeed.serve.server import BackgroundServer, ServerConfig
from lightspeed.serve.shm import SharedMemoryRegistry
from tests.serve.conftest import add_python_models
from tests.serve.serve_helpers import mlp_numpy


class FakeCuda:
    """Device memory as host buffers; a handle names one buffer; pointers are base + offset."""

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.buffers: dict[bytes, bytearray] = {}
        self.opened: dict[int, bytearray] = {}
        self.closed: list[int] = []

    def allocate(self, size: int) -> bytes:
        handle = os.urandom(HANDLE_SIZE)
        self.buffers[handle] = bytearray(size)
        return handle

    def open(self, handle: bytes, device_id: int) -> int:
        if device_id >= self.devices:
            raise ServeError("INVALID_ARGUMENT", f"device_id {device_id} does not exist")
        if handle not in self.buffers:
            raise ServeError("INVALID_ARGUMENT", "cudaIpcOpenMemHandle failed: invalid argument")
        base = (len(self.opened) + 1) << 40
        self.opened[base] = self.buffers[handle]
        return base

    def _at(self, ptr: int) -> tuple[bytearray, int]:
        base = ptr >> 40 << 40
        return self.opened[base], ptr - base

    def to_host(self, ptr: int, device_id: int, size: int) -> bytearray:
        buf, off = self._at(ptr)
        return bytearray(buf[off : off + size])

    def to_device(self, ptr: int, device_id: int, data: bytes) -> None:
        buf, off = self._at(ptr)
        buf[off : off + len(data)] = data

    def close(self, ptr: int, device_id: int) -> None:
        self.closed.append(ptr)


@pytest.fixture(scope="module")
def cuda_server(repo):
    fake = FakeCuda()

    def setup(core):
        core.shm = SharedMemoryRegistry(cuda_runtime=lambda: fake)  # type: ignore[arg-type]
        add_python_models(core)

    config = ServerConfig(repository=repo, grpc_port=0, http_port=0, metrics_port=0)
    with BackgroundServer(config, setup=setup) as srv:
        yield srv, fake


@pytest.mark.parametrize("module", [grpcclient, httpclient])
def test_inputs_and_outputs_through_cuda_shared_memory(cuda_server, module):
    srv, fake = cuda_server
    x = np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)
    h_in, h_out = fake.allocate(x.nbytes + 64), fake.allocate(8 * 5 * 4)
    fake.buffers[h_in][64 : 64 + x.nbytes] = x.tobytes()  # the input sits at offset 64
    grpc = module is grpcclient
    c = module.InferenceServerClient(srv.grpc_url if grpc else srv.http_url)
    b64 = base64.b64encode  # tritonclient's get_raw_handle gives base64
    c.register_cuda_shared_memory(
        "cin", b64(h_in) if grpc else b64(h_in).decode(), 0, x.nbytes + 64
    )
    c.register_cuda_shared_memory("cout", b64(h_out) if grpc else b64(h_out).decode(), 0, 160)
    try:
        status = c.get_cuda_shared_memory_status()
        regions = status.regions if grpc else {r["name"]: r for r in status}
        assert set(regions) == {"cin", "cout"}
        size = regions["cin"].byte_size if grpc else regions["cin"]["byte_size"]
        assert int(size) == x.nbytes + 64
        # system and CUDA regions share one namespace, as in Triton
        with pytest.raises(InferenceServerException, match="already registered"):
            c.register_system_shared_memory("cin", "/whatever", 16)
        i = module.InferInput("x", [8, 16], "FP32")
        i.set_shared_memory("cin", x.nbytes, offset=64)
        o = module.InferRequestedOutput("y")
        o.set_shared_memory("cout", 160)
        c.infer("mlp", [i], outputs=[o])
        y = np.frombuffer(bytes(fake.buffers[h_out]), np.float32).reshape(8, 5)
        np.testing.assert_allclose(y, mlp_numpy(x), rtol=1e-5, atol=1e-6)
        # bounds, unknown handles, wrong handle sizes and devices are refused by name
        i.set_shared_memory("cin", x.nbytes, offset=128)
        with pytest.raises(InferenceServerException, match="runs past shared memory region"):
            c.infer("mlp", [i])
        with pytest.raises(InferenceServerException, match="cudaIpcOpenMemHandle failed"):
            c.register_cuda_shared_memory(
                "bad", b64(bytes(64)) if grpc else b64(bytes(64)).decode(), 0, 8
            )
        with pytest.raises(InferenceServerException, match="has 3 bytes"):
            c.register_cuda_shared_memory("bad", b64(b"abc") if grpc else "YWJj", 0, 8)
        with pytest.raises(InferenceServerException, match="device_id 3 does not exist"):
            c.register_cuda_shared_memory("bad", b64(h_in) if grpc else b64(h_in).decode(), 3, 8)
        # system-memory status does not list CUDA regions and vice versa
        sys_status = c.get_system_shared_memory_status()
        assert (len(sys_status.regions) if grpc else len(sys_status)) == 0
        n_closed = len(fake.closed)
        c.unregister_cuda_shared_memory("cin")
        assert len(fake.closed) == n_closed + 1
        with pytest.raises(InferenceServerException, match="'cin' is not registered"):
            c.get_cuda_shared_memory_status("cin")
    finally:
        c.unregister_cuda_shared_memory()
        c.close()
    assert len(fake.closed) == n_closed + 2


def test_registration_without_cuda_says_why():
    def no_cuda():
        raise ServeError("FAILED_PRECONDITION", "CUDA shared memory is not available: no GPU")

    reg = SharedMemoryRegistry(cuda_runtime=no_cuda)
    with pytest.raises(ServeError, match="not available") as exc:
        reg.register_cuda("r", bytes(HANDLE_SIZE), 0, 16)
    assert exc.value.code == "FAILED_PRECONDITION"
    assert reg.cuda_status() == []


def _has_gpu() -> bool:
    try:
        CudaRuntime.load()
    except ServeError:
        return False
    return True


@pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA GPU and libcudart")
def test_real_cuda_ipc_round_trip(server):
    """A real device buffer made by tritonclient's CUDA helpers (needs cuda-python)."""
    cudashm = pytest.importorskip("tritonclient.utils.cuda_shared_memory")
    x = np.random.default_rng(4).normal(size=(8, 16)).astype(np.float32)
    h_in = cudashm.create_shared_memory_region("gin", x.nbytes, 0)
    h_out = cudashm.create_shared_memory_region("gout", 160, 0)
    cudashm.set_shared_memory_region(h_in, [x])
    c = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        c.register_cuda_shared_memory("gin", cudashm.get_raw_handle(h_in), 0, x.nbytes)
        c.register_cuda_shared_memory("gout", cudashm.get_raw_handle(h_out), 0, 160)
        i = grpcclient.InferInput("x", [8, 16], "FP32")
        i.set_shared_memory("gin", x.nbytes)
        o = grpcclient.InferRequestedOutput("y")
        o.set_shared_memory("gout", 160)
        c.infer("mlp", [i], outputs=[o])
        y = cudashm.get_contents_as_numpy(h_out, np.float32, [8, 5])
        np.testing.assert_allclose(y, mlp_numpy(x), rtol=1e-5, atol=1e-6)
    finally:
        c.unregister_cuda_shared_memory()
        c.close()
        cudashm.destroy_shared_memory_region(h_in)
        cudashm.destroy_shared_memory_region(h_out)
