"""System shared memory regions (Triton's extension) for co-located clients.

A client creates a POSIX shared memory object (``/dev/shm/<key>``), registers
it under a region name, and then names the region instead of sending tensor
bytes; inputs are read with ``np.frombuffer`` straight from the mapping, and
outputs can be written back into a region. ``tritonclient.utils.shared_memory``
makes the client side.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass

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

    def __init__(self) -> None:
        self._regions: dict[str, Region] = {}
        self.refusal = ""  # non-empty: registration is refused with this message (--workers N)

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if self.refusal:
            raise ServeError("FAILED_PRECONDITION", self.refusal)
        if not name:
            raise invalid("a shared memory region needs a name")
        if name in self._regions:
            raise ServeError(
                "ALREADY_EXISTS",
                f"shared memory region '{name}' is already registered; unregister it first",
            )
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
        if name:
            if name not in self._regions:
                raise not_found(f"shared memory region '{name}' is not registered")
            return [self._regions[name].status()]
        return [r.status() for r in self._regions.values()]

    def view(self, name: str, offset: int, byte_size: int, what: str) -> memoryview:
        """The bytes of ``[offset, offset+byte_size)`` within a region (no copy)."""
        region = self._regions.get(name)
        if region is None:
            raise invalid(f"{what}: shared memory region '{name}' is not registered")
        if offset < 0 or byte_size < 0 or offset + byte_size > region.byte_size:
            raise invalid(
                f"{what}: offset {offset} + byte_size {byte_size} runs past shared memory "
                f"region '{name}' ({region.byte_size} bytes)"
            )
        start = region.offset + offset
        return memoryview(region.mapping)[start : start + byte_size]

    def write(self, name: str, offset: int, byte_size: int, data: bytes, what: str) -> None:
        if len(data) > byte_size:
            raise invalid(
                f"{what}: needs {len(data)} bytes but shared memory byte_size is {byte_size}"
            )
        view = self.view(name, offset, len(data), what)
        view[:] = data
        view.release()
