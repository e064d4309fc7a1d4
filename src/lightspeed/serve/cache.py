"""The response cache: answers a repeated request without running the model.

One cache per server, bounded in bytes and evicting the least recently used
entry, like Triton's ``local`` cache (``--cache-config local,size=N``; here
``--response-cache-mb N``). A model opts in with ``response_cache { enable: true }``.
The key is a digest of the model, version, requested outputs and every input's
name, datatype, shape and bytes, so only a bit-identical request hits.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def request_key(model: str, version: str, inputs: dict, outputs: list[str] | None) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{model}\0{version}\0{','.join(outputs or [])}\0".encode())
    for name in sorted(inputs):
        a = np.ascontiguousarray(inputs[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes() if a.ndim == 0 or a.size == 0 else memoryview(a).cast("B"))  # type: ignore[arg-type]
    return h.digest()


class ResponseCache:
    """An LRU map request key -> output arrays (read-only copies), at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()  # results arrive on the loop; keep it safe anyway

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: bytes, result: dict[str, np.ndarray]) -> None:
        entry = {}
        size = 0
        for name, arr in result.items():
            copy = np.array(arr, copy=True)
            copy.flags.writeable = False
            entry[name] = copy
            size += copy.nbytes
        if size > self.max_bytes:
            return  # larger than the whole cache: never stored
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= sum(a.nbytes for a in old.values())
            while self._entries and self.bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= sum(a.nbytes for a in evicted.values())
            self._entries[key] = entry
            self.bytes += size
