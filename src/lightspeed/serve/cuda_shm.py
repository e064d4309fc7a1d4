"""CUDA shared memory (Triton's extension): device buffers a client shares by IPC handle.

A co-located client allocates device memory, takes its ``cudaIpcMemHandle_t``
(64 bytes) and registers it under a region name with a device id and a size;
requests then name the region instead of sending tensor bytes. The server
opens the handle with ``cudaIpcOpenMemHandle`` and copies inputs device ->
host (the backends compute on host arrays; onnxruntime's CUDA provider copies
them back, which is the price of keeping one backend interface) and outputs
host -> device.

The CUDA runtime is reached through ``ctypes`` on ``libcudart`` (the one the
``nvidia-cuda-runtime`` wheel that onnxruntime-gpu pulls in ships, or the
system's), so the server needs no CUDA Python package. Without a runtime or a
GPU, registration fails with a message saying which.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from dataclasses import dataclass

from lightspeed.serve.errors import ServeError

HANDLE_SIZE = 64  # CUDA_IPC_HANDLE_SIZE
_LAZY_PEER_ACCESS = 1  # cudaIpcMemLazyEnablePeerAccess
_HOST_TO_DEVICE, _DEVICE_TO_HOST = 1, 2


class _IpcHandle(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_char * HANDLE_SIZE)]


def _library_candidates() -> list[str]:
    """libcudart paths to try: the nvidia wheel in this environment first, then the system's."""
    found = []
    for base in sys.path:
        found += sorted(glob.glob(os.path.join(base, "nvidia", "cu*", "lib", "libcudart.so*")))
        found += sorted(
            glob.glob(os.path.join(base, "nvidia", "cuda_runtime", "lib", "libcudart.so*"))
        )
    return [*found, "libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]


def unavailable(reason: str) -> ServeError:
    return ServeError(
        "FAILED_PRECONDITION",
        f"CUDA shared memory is not available on this server: {reason}; use system shared "
        "memory (tritonclient.utils.shared_memory) or send tensors in the request",
    )


class CudaRuntime:
    """The few CUDA runtime calls CUDA shared memory needs, on one loaded libcudart."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        n = ctypes.c_int(0)
        err = lib.cudaGetDeviceCount(ctypes.byref(n))
        if err != 0 or n.value == 0:
            raise unavailable(f"no CUDA device ({self._error(err) if err else '0 devices'})")
        self.devices = n.value

    @classmethod
    def load(cls) -> CudaRuntime:
        for path in _library_candidates():
            try:
                return cls(ctypes.CDLL(path))
            except OSError:
                continue
        raise unavailable("no CUDA runtime library (libcudart) could be loaded")

    def _error(self, err: int) -> str:
        text = self._lib.cudaGetErrorString(err)
        return text.decode() if text else f"CUDA error {err}"

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            raise ServeError("INVALID_ARGUMENT", f"{what} failed: {self._error(err)}")

    def open(self, handle: bytes, device_id: int) -> int:
        """The device pointer of a client's IPC handle (opened on ``device_id``)."""
        if not 0 <= device_id < self.devices:
            raise ServeError(
                "INVALID_ARGUMENT",
                f"device_id {device_id} does not exist; this server sees {self.devices} GPU(s)",
            )
        self._check(self._lib.cudaSetDevice(device_id), f"cudaSetDevice({device_id})")
        ptr = ctypes.c_void_p()
        h = _IpcHandle()
        h.reserved = handle
        self._check(
            self._lib.cudaIpcOpenMemHandle(ctypes.byref(ptr), h, _LAZY_PEER_ACCESS),
            "cudaIpcOpenMemHandle",
        )
        return int(ptr.value or 0)

    def to_host(self, ptr: int, device_id: int, size: int) -> bytearray:
        buf = bytearray(size)
        dst = (ctypes.c_char * size).from_buffer(buf)
        self._lib.cudaSetDevice(device_id)
        self._check(
            self._lib.cudaMemcpy(dst, ctypes.c_void_p(ptr), ctypes.c_size_t(size), _DEVICE_TO_HOST),
            "cudaMemcpy device->host",
        )
        return buf

    def to_device(self, ptr: int, device_id: int, data: bytes) -> None:
        self._lib.cudaSetDevice(device_id)
        self._check(
            self._lib.cudaMemcpy(
                ctypes.c_void_p(ptr), data, ctypes.c_size_t(len(data)), _HOST_TO_DEVICE
            ),
            "cudaMemcpy host->device",
        )

    def close(self, ptr: int, device_id: int) -> None:
        self._lib.cudaSetDevice(device_id)
        self._lib.cudaIpcCloseMemHandle(ctypes.c_void_p(ptr))


@dataclass
class CudaRegion:
    name: str
    device_id: int
    byte_size: int
    ptr: int

    def status(self) -> dict:
        return {"name": self.name, "device_id": self.device_id, "byte_size": self.byte_size}
