"""System shared memory regions (Triton's extension) for co-located clients.

A client creates a POSIX shared memory object (``/dev/shm/<key>``), registers
it under a region name, and then names the region instead of sending tensor
bytes; inputs are read with ``np.frombuffer`` straight from the mapping, and
outputs can be written back into a region. ``tritonclient.utils.shared_memory``
makes the client side. CUDA regions (``serve/cuda_shm.py``) live in the same
registry: region names are unique across both kinds, as in Triton.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass

from lightspeed.serve.cuda_shm import HANDLE_SIZE, CudaRegion, CudaRuntime
from lightspeed.serve.errors import ServeError, invalid, not_found

SHM_DIR = "/dev/shm"


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    mapping: mmap.mmap

    def status(self) -> dict:
        return {
            "name": self.name,
            "key": self.key,
            "offset": self.offset,
            "byte_size": self.byte_size,
        }


class SharedMemoryRegistry:
    """Registered regions by name (one per server, shared by gRPC and HTTP)."""

    def __init__(self, cuda_runtime: Callable[[], CudaRuntime] = CudaRuntime.load) -> None:
        self._regions: dict[str, Region] = {}
        self._cuda_regions: dict[str, CudaRegion] = {}
        self._load_cuda = cuda_runtime
        self._cuda: CudaRuntime | None = None  # loaded on the first CUDA registration
        self.refusal = ""  # non-empty: registration is refused with this message (--workers N)

    def _check_new(self, name: str) -> None:
        if self.refusal:
            raise ServeError("FAILED_PRECONDITION", self.refusal)
        if not name:
            raise invalid("a shared memory region needs a name")
        if name in self._regions or name in self._cuda_regions:
            raise ServeError(
                "ALREADY_EXISTS",
                f"shared memory region '{name}' is already registered; unregister it first",
            )

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._check_new(name)
        if offset < 0 or byte_size <= 0:
            raise invalid(f"shared memory region '{name}': offset must be >= 0 and byte_size > 0")
        path = os.path.join(SHM_DIR, key.lstrip("/"))
        if not key or "/" in key.lstrip("/") or not os.path.exists(path):
            raise not_found(f"shared memory key '{key}' does not exist (no {path})")
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size:
                raise invalid(
                    f"shared memory region '{name}': offset {offset} + byte_size {byte_size} "
                    f"exceeds the {size} bytes of '{key}'"
                )
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._regions[name] = Region(name, key, offset, byte_size, mapping)

    def unregister(self, name: str = "") -> None:
        names = [name] if name else list(self._regions)
        for n in names:
            region = self._regions.pop(n, None)
            if region is None:
                continue  # Triton treats unregistering an unknown region as success
            # a request may still hold a view; then the mapping closes when that is freed
            with contextlib.suppress(BufferError):
                region.mapping.close()

    def status(self, name: str = "") -> list[dict]:
        return _status(self._regions, name, "shared memory")

    # ------------------------------------------------------------------ CUDA regions
    def register_cuda(self, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> None:
        """Open a client's CUDA IPC handle (64 bytes) as region ``name``."""
        self._check_new(name)
        if len(raw_handle) != HANDLE_SIZE:
            raise invalid(
                f"CUDA shared memory region '{name}': raw_handle has {len(raw_handle)} bytes; "
                f"a cudaIpcMemHandle_t has {HANDLE_SIZE} "
                "(send tritonclient.utils.cuda_shared_memory.get_raw_handle's value)"
            )
        if byte_size <= 0 or device_id < 0:
            raise invalid(
                f"CUDA shared memory region '{name}': byte_size must be > 0 and device_id >= 0"
            )
        if self._cuda is None:
            self._cuda = self._load_cuda()
        ptr = self._cuda.open(raw_handle, device_id)
        self._cuda_regions[name] = CudaRegion(name, device_id, byte_size, ptr)

    def unregister_cuda(self, name: str = "") -> None:
        names = [name] if name else list(self._cuda_regions)
        for n in names:
            region = self._cuda_regions.pop(n, None)
            if region is not None and self._cuda is not None:
                self._cuda.close(region.ptr, region.device_id)

    def cuda_status(self, name: str = "") -> list[dict]:
        return _status(self._cuda_regions, name, "CUDA shared memory")

    # ------------------------------------------------------------------ request data
    def _bounds(self, name: str, offset: int, byte_size: int, what: str) -> Region | CudaRegion:
        region: Region | CudaRegion | None = self._regions.get(name) or self._cuda_regions.get(name)
        if region is None:
            raise invalid(f"{what}: shared memory region '{name}' is not registered")
        if offset < 0 or byte_size < 0 or offset + byte_size > region.byte_size:
            raise invalid(
                f"{what}: offset {offset} + byte_size {byte_size} runs past shared memory "
                f"region '{name}' ({region.byte_size} bytes)"
            )
        return region

    def view(self, name: str, offset: int, byte_size: int, what: str) -> memoryview:
        """The bytes of ``[offset, offset+byte_size)`` within a region.

        System regions give a view of the mapping (no copy); CUDA regions a host copy.
        """
        region = self._bounds(name, offset, byte_size, what)
        if isinstance(region, CudaRegion):
            assert self._cuda is not None
            host = self._cuda.to_host(region.ptr + offset, region.device_id, byte_size)
            return memoryview(host)
        start = region.offset + offset
        return memoryview(region.mapping)[start : start + byte_size]

    def write(self, name: str, offset: int, byte_size: int, data: bytes, what: str) -> None:
        if len(data) > byte_size:
            raise invalid(
                f"{what}: needs {len(data)} bytes but shared memory byte_size is {byte_size}"
            )
        region = self._bounds(name, offset, len(data), what)
        if isinstance(region, CudaRegion):
            assert self._cuda is not None
            self._cuda.to_device(region.ptr + offset, region.device_id, data)
            return
        view = self.view(name, offset, len(data), what)
        view[:] = data
        view.release()


def _status(regions: dict, name: str, kind: str) -> list[dict]:
    if name:
        if name not in regions:
            raise not_found(f"{kind} region '{name}' is not registered")
        return [regions[name].status()]
    return [r.status() for r in regions.values()]
