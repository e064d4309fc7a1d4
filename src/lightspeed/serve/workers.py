"""``lightspeed serve --workers N``: N server processes sharing one port (SO_REUSEPORT).

One server process runs its network front ends on one event-loop thread, so it
tops out near one core of Python work. With SO_REUSEPORT the kernel
spreads incoming *connections* over N processes, each a complete
:class:`~lightspeed.serve.server.Server` with its own models, queues and
batcher. A client connection stays on one worker, so the gain needs several
client connections (many clients, as with SONIC, or a client that opens
several channels).

What is per worker, and therefore changed or refused in this mode:

- ModelStatistics and ``/metrics``: counters belong to one worker. Worker ``i``
  serves Prometheus metrics on ``metrics_port + i`` (each on a free port when
  ``--metrics-port 0``); sum the workers for totals. ModelStatistics answers for
  the worker the client's connection landed on.
- Repository load/unload and system shared memory would change only one worker,
  so they are refused with FAILED_PRECONDITION (HTTP 400) and a message naming
  ``--workers 1``. ``--model-control explicit`` is refused at start.

The parent forks the workers before gRPC or onnxruntime are imported (both are
unsafe to fork once started), waits until each reports it is serving, logs one
``server started`` line, and on SIGINT/SIGTERM forwards the signal so every
worker drains its accepted requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import time
from dataclasses import replace

from lightspeed.errors import ConfigError
from lightspeed.serve.logs import kv
from lightspeed.serve.server import Server, ServerConfig

log = logging.getLogger("lightspeed.serve")

_PR_SET_PDEATHSIG = 1


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: it fixes the port, workers then join it.

    A plain bind first proves the port free: SO_REUSEPORT alone would silently share
    it with another server of the same user that also set the option."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot bind {host}:{port} ({exc.strerror}); is another server on it? "
                "choose another port, or 0 for a free one"
            ) from None
        port = probe.getsockname()[1]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {host}:{port} ({exc.strerror}); try again") from None
    return sock


def _worker_config(config: ServerConfig, index: int, grpc_port: int, http_port: int):
    metrics = config.metrics_port
    if metrics > 0:
        metrics += index
    return replace(
        config,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics,
        reuse_port=True,
        worker_index=index,
    )


def _child(config: ServerConfig, ready_fd: int) -> int:
    """Body of one forked worker: serve until SIGTERM/SIGINT, report the ports once up."""
    if sys.platform == "linux":  # die with the parent, whatever killed it
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    async def main() -> None:
        server = Server(config)
        await server.start()
        models = ",".join(m.name for m in server.core.loaded())
        line = f"{server.grpc_port} {server.http_port} {server.metrics_port} {models}\n"
        os.write(ready_fd, line.encode())
        os.close(ready_fd)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(main())
    return 0


def run_workers(config: ServerConfig, workers: int, start_timeout_s: float = 300.0) -> int:
    """Fork ``workers`` servers on shared ports, supervise them; return the exit code."""
    reserved = []
    ports = {}
    for key in ("grpc_port", "http_port"):
        port = getattr(config, key)
        if port < 0:
            ports[key] = port
            continue
        sock = _reserve(config.host, port)
        reserved.append(sock)
        ports[key] = sock.getsockname()[1]
    children: dict[int, int] = {}  # pid -> worker index
    pipes: dict[int, int] = {}  # read fd -> worker index
    for i in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(r)
            for sock in reserved:
                sock.close()
            code = 1
            try:
                code = _child(_worker_config(config, i, ports["grpc_port"], ports["http_port"]), w)
            except BaseException:
                log.exception("worker failed", extra=kv(worker=i))
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(w)
        children[pid] = i
        pipes[r] = i

    stopping = False

    def on_signal(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # wait until every worker serves (or one fails)
    info: dict[int, list[str]] = {}
    buffers = {fd: b"" for fd in pipes}
    deadline = time.monotonic() + start_timeout_s
    code = 0
    while len(info) < workers and not stopping:
        if time.monotonic() > deadline:
            log.error("workers did not start in time", extra=kv(timeout_s=start_timeout_s))
            code = 1
            break
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(list(buffers), [], [], 0.2)
            for fd in readable:
                data = os.read(fd, 4096)
                if not data:  # worker exited before reporting
                    del buffers[fd]
                    continue
                buffers[fd] += data
                if buffers[fd].endswith(b"\n"):
                    info[pipes[fd]] = buffers.pop(fd).decode().split(" ")
                    os.close(fd)
        if _reap(children, expected=False):
            code = 1
            break
    for sock in reserved:
        sock.close()
    for fd in buffers:
        os.close(fd)
    if code == 0 and not stopping:
        metrics = [info[i][2] for i in sorted(info)]
        log.info(
            "server started",
            extra=kv(
                host=config.host,
                grpc_port=ports["grpc_port"] if ports["grpc_port"] >= 0 else None,
                http_port=ports["http_port"] if ports["http_port"] >= 0 else None,
                metrics_port=metrics,
                workers=workers,
                models=info[0][3].strip().split(",") if info else [],
            ),
        )
        while not stopping:
            time.sleep(0.2)
            if _reap(children, expected=False):
                code = 1
                break
    # graceful: every worker drains what it accepted
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + config.drain_timeout_s + 15
    while children and time.monotonic() < end:
        _reap(children, expected=True)
        time.sleep(0.05)
    for pid in list(children):
        log.error("worker did not stop in time; killing it", extra=kv(pid=pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    log.info("server stopped", extra=kv(workers=workers))
    return code


def _reap(children: dict[int, int], expected: bool) -> bool:
    """Collect exited workers; True when one exited that was not asked to."""
    failed = False
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            index = children.pop(pid)
            if not expected:
                log.error(
                    "worker exited unexpectedly; stopping the server",
                    extra=kv(worker=index, pid=pid, status=status),
                )
                failed = True
    return failed
