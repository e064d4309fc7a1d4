"""Inference as a service: a Triton-compatible server (gRPC + HTTP) with dynamic batching.

Heavy dependencies (grpcio, aiohttp, onnxruntime) load only when used.
"""

from __future__ import annotations

__all__ = [
    "BackgroundServer",
    "InferenceCore",
    "ModelRepository",
    "ServeError",
    "Server",
    "ServerConfig",
]


def __getattr__(name: str):
    if name in ("Server", "ServerConfig", "BackgroundServer"):
        from lightspeed.serve import server

        return getattr(server, name)
    if name == "InferenceCore":
        from lightspeed.serve.core import InferenceCore

        return InferenceCore
    if name == "ModelRepository":
        from lightspeed.serve.repository import ModelRepository

        return ModelRepository
    if name == "ServeError":
        from lightspeed.serve.errors import ServeError

        return ServeError
    raise AttributeError(name)
