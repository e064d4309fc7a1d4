"""Run the gRPC, HTTP and metrics front ends on one event loop over one core.

``Server`` is the asyncio object; ``BackgroundServer`` runs one in a thread
(for notebooks and tests that use blocking clients).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightspeed.serve.core import CoreOptions, InferenceCore
from lightspeed.serve.errors import ServeError
from lightspeed.serve.logs import kv
from lightspeed.serve.repository import ModelRepository

log = logging.getLogger("lightspeed.serve")


@dataclass
class ServerConfig:
    """Options of ``lightspeed serve`` (ports: 0 picks a free port, -1 disables)."""

    repository: str | Path | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    max_message_bytes: int = 256 * 1024 * 1024
    max_queue_size: int = 4096
    drain_timeout_s: float = 30.0
    load_all: bool = True  # False: explicit model control, load via the repository API
    ort_threads: int = 1
    inline_below_us: int = 500
    response_cache_mb: float = 0.0  # the response cache's size (0: none)
    # --workers N: the total count (per-worker state makes some operations unsafe) and,
    # inside a worker, its index and that the ports are shared through SO_REUSEPORT
    workers: int = 1
    worker_index: int | None = None
    reuse_port: bool = False
    grpc_frontend: str = "h2"  # "h2": our HTTP/2 transport; "grpcio": grpc.aio's server


def multi_worker_refusal(what: str, workers: int) -> str:
    """The message for an operation that would change only one of ``workers`` processes."""
    return (
        f"{what} is not available with --workers {workers}: it would change only the "
        "worker process this connection reached; restart the server with --workers 1 "
        "to use it"
    )


def keep_freed_memory(trim_bytes: int = 256 << 20, mmap_bytes: int = 64 << 20) -> bool:
    """Ask glibc to keep freed memory for reuse (a server process's own choice).

    By default glibc returns the top of the heap to the OS as soon as a large block
    is freed and serves blocks over a moving threshold with fresh mmaps; a server that
    handles megabyte requests then page-faults through every buffer of every request
    (measured: half the server CPU of 16,000-row requests). False where the C library
    has no ``mallopt`` (not glibc)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_trim_threshold, trim_bytes)) and bool(
        mallopt(m_mmap_threshold, mmap_bytes)
    )


class Server:
    """The whole server: ``await start()``, later ``await stop()``."""

    def __init__(self, config: ServerConfig, core: InferenceCore | None = None) -> None:
        self.config = config
        repo = ModelRepository(config.repository) if config.repository is not None else None
        self.core = core or InferenceCore(
            repo,
            CoreOptions(
                max_queue_size=config.max_queue_size,
                ort_threads=config.ort_threads,
                inline_below_us=config.inline_below_us,
                response_cache_bytes=int(config.response_cache_mb * 1024 * 1024),
            ),
        )
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self._grpc: Any = None
        self._servicer: Any = None
        self._http_fe: Any = None
        self._runners: list = []
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        cfg = self.config
        # a lone server binds every port before loading models: a port in use fails in a
        # moment, not after the loads, and until they are done it answers "not ready". Workers
        # sharing a port (SO_REUSEPORT) load first: the kernel would hand a worker that is
        # still loading its share of the connections.
        load_first = cfg.load_all and cfg.reuse_port
        if load_first:
            await self.core.load_all()
        self.core.loading = cfg.load_all and not load_first
        if cfg.workers > 1:
            self.core.frozen = multi_worker_refusal("repository load/unload", cfg.workers)
            self.core.shm.refusal = multi_worker_refusal("shared memory", cfg.workers)
        if cfg.grpc_port >= 0:
            from lightspeed.serve.grpc_server import create_grpc_server

            self._grpc, self._servicer, self.grpc_port = create_grpc_server(
                self.core,
                f"{cfg.host}:{cfg.grpc_port}",
                cfg.max_message_bytes,
                reuse_port=cfg.reuse_port,
                frontend=cfg.grpc_frontend,
            )
            await self._grpc.start()
        if cfg.http_port >= 0:
            from lightspeed.serve.http_server import create_http_app

            app, self._http_fe = create_http_app(self.core, cfg.max_message_bytes)
            self.http_port = await self._site(app, cfg.http_port)
        if cfg.metrics_port >= 0:
            from lightspeed.serve.http_server import create_metrics_app

            self.metrics_port = await self._site(create_metrics_app(self.core), cfg.metrics_port)
        if cfg.load_all and not load_first:
            await self.core.load_all()
        log.info(
            "server started" if cfg.worker_index is None else "worker started",
            extra=kv(
                worker=cfg.worker_index,
                host=cfg.host,
                grpc_port=self.grpc_port,
                http_port=self.http_port,
                metrics_port=self.metrics_port,
                models=[m.name for m in self.core.loaded()],
            ),
        )

    async def _site(self, app, port: int) -> int:
        from aiohttp import web

        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.config.drain_timeout_s)
        await runner.setup()
        site = web.TCPSite(
            runner, self.config.host, port, reuse_address=True, reuse_port=self.config.reuse_port
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ServeError(
                "UNAVAILABLE",
                f"cannot bind the HTTP port {self.config.host}:{port} ({exc.strerror}); "
                "is it in use?",
            ) from None
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Graceful: refuse new work, answer everything accepted, then close."""
        if self._stopped.is_set():
            return
        log.info("server stopping; draining in-flight requests")
        if self._servicer is not None:
            self._servicer.begin_shutdown()
        if self._http_fe is not None:
            self._http_fe.accepting = False
        waits = []
        if self._grpc is not None:
            waits.append(self._grpc.stop(self.config.drain_timeout_s))
        waits += [r.cleanup() for r in self._runners]
        await asyncio.gather(*waits, return_exceptions=True)
        await self.core.close()
        self._stopped.set()
        log.info("server stopped")

    async def serve_forever(self) -> None:
        """Start, run until SIGINT/SIGTERM, stop gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before start: a signal then still stops
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()


class BackgroundServer:
    """A :class:`Server` on its own event loop in a daemon thread (context manager)."""

    def __init__(self, config: ServerConfig, setup=None) -> None:
        self.config = config
        self._setup = setup  # optional callable(core) run on the loop before start
        self.server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lightspeed-serve", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self.server = Server(self.config)
            if self._setup is not None:
                self._setup(self.server.core)
            loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def call(self, coro, timeout: float = 60.0):
        """Run a coroutine on the server loop from another thread."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is None or self.server is None or not self._loop.is_running():
            return
        self.call(self.server.stop(), timeout=self.config.drain_timeout_s + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(30)

    @property
    def grpc_url(self) -> str:
        assert self.server is not None
        return f"{self.config.host}:{self.server.grpc_port}"

    @property
    def http_url(self) -> str:
        assert self.server is not None
        return f"{self.config.host}:{self.server.http_port}"

    @property
    def metrics_url(self) -> str:
        assert self.server is not None
        return f"http://{self.config.host}:{self.server.metrics_port}/metrics"
