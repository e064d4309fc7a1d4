"""SONIC-style client: offload per-event inference to a Triton-compatible server.

``SonicClient`` packs the objects of one event (jets, hits, ...) into one
request along the batch dimension, sends it asynchronously, retries
transient failures, and falls back to local in-process inference when no
server answers. It speaks the Triton gRPC protocol through ``tritonclient``,
so it works against ``lightspeed serve`` and NVIDIA Triton alike.
"""

from __future__ import annotations

from lightspeed.client.sonic import (
    ClientStats,
    Endpoint,
    InferenceError,
    ModelSpec,
    SonicClient,
    local_fallback,
)

__all__ = [
    "ClientStats",
    "Endpoint",
    "InferenceError",
    "ModelSpec",
    "SonicClient",
    "local_fallback",
]
