"""Where benchmark requests go: a compiled model in this process, or a served model over gRPC.

A target string is ``inprocess:COMPILED_DIR`` or ``grpc://HOST:PORT/MODEL``.
Both targets offer a blocking ``infer(x)`` and a callback-based
``infer_async(x, done)`` so LoadGen's SUT and the capacity study drive them
the same way. Also here: ``ServerProcess``, a ``lightspeed serve`` subprocess
on free ports that is always stopped.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightspeed.errors import ConfigError, LightspeedError, require

Done = Callable[[np.ndarray | None, BaseException | None], None]


class ServerUnreachableError(LightspeedError, ConnectionError):
    """The inference server named by a target does not answer."""


@dataclass(frozen=True)
class TargetSpec:
    kind: str  # "inprocess" | "grpc"
    path: str = ""  # compiled dir (inprocess)
    host: str = ""
    port: int = 0
    model: str = ""

    @property
    def label(self) -> str:
        return "inprocess" if self.kind == "inprocess" else "grpc"

    def __str__(self) -> str:
        if self.kind == "inprocess":
            return f"inprocess:{self.path}"
        return f"grpc://{self.host}:{self.port}/{self.model}"


_GRPC = re.compile(r"^grpc://(?P<host>[^/:]+|\[[^\]]+\]):(?P<port>\d+)/(?P<model>[^/]+)/?$")


def parse_target(text: str) -> TargetSpec:
    """Parse ``inprocess:DIR`` or ``grpc://HOST:PORT/MODEL``; ConfigError says the valid forms."""
    if text.startswith("inprocess:"):
        path = text[len("inprocess:") :]
        if not path:
            raise ConfigError("target 'inprocess:' needs a compiled model directory: inprocess:DIR")
        return TargetSpec("inprocess", path=path)
    m = _GRPC.match(text)
    if m:
        port = int(m["port"])
        if not 0 < port < 65536:
            raise ConfigError(f"target {text!r}: port {port} is out of range 1-65535")
        return TargetSpec("grpc", host=m["host"].strip("[]"), port=port, model=m["model"])
    raise ConfigError(
        f"target {text!r} is not understood; use inprocess:COMPILED_DIR or grpc://HOST:PORT/MODEL"
    )


class InprocessTarget:
    """A compiled model run by the bit-exact emulator in this process.

    ``infer_async`` feeds one worker thread that batches whatever is queued
    (like a server's dynamic batcher), so Server/MultiStream queries overlap.
    """

    def __init__(self, compiled_dir: str | Path, max_batch: int = 1024) -> None:
        from lightspeed.quantize import load_compiled

        path = Path(compiled_dir)
        if not path.is_dir():
            raise ConfigError(
                f"{path} is not a directory; inprocess: needs a compiled model "
                "(make one with `lightspeed compile MODEL.onnx -o DIR`)"
            )
        self.model = load_compiled(path)
        self.name = str(path)
        self.max_batch = max_batch
        self.input_shape = tuple(self.model.input_shapes[self.model.input_names[0]])
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None

    def infer(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x), dtype=np.float64)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The float model this compiled model was quantized from."""
        return np.asarray(self.model.predict_float(x), dtype=np.float64)

    def infer_async(self, x: np.ndarray, done: Done) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._loop, name="inprocess-sut", daemon=True)
            self._worker.start()
        self._queue.put((x, done))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            rows = len(item[0])
            while rows < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
                rows += len(nxt[0])
            try:
                y = self.infer(np.concatenate([b[0] for b in batch]))
            except BaseException as exc:  # report to every waiter, keep serving
                for _, done in batch:
                    done(None, exc)
                continue
            start = 0
            for xb, done in batch:
                done(y[start : start + len(xb)], None)
                start += len(xb)

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(10)
            self._worker = None


class GrpcTarget:
    """A model on a Triton-compatible server, through ``tritonclient.grpc``."""

    def __init__(self, spec: TargetSpec, timeout_s: float = 5.0) -> None:
        grpcclient = require("tritonclient.grpc", "serve", "gRPC benchmark targets")
        from tritonclient.utils import InferenceServerException

        self._grpc = grpcclient
        self.url = f"{spec.host}:{spec.port}"
        self.name = str(spec)
        self.model_name = spec.model
        self.client = grpcclient.InferenceServerClient(self.url)
        try:
            live = self.client.is_server_live(client_timeout=timeout_s)
        except InferenceServerException as exc:
            raise ServerUnreachableError(
                f"no inference server answers at {self.url} (gRPC) within {timeout_s:g} s: "
                f"{_first_line(exc)}; start one with `lightspeed serve REPO --grpc-port {spec.port}`"
            ) from None
        if not live:
            raise ServerUnreachableError(f"the server at {self.url} reports it is not live")
        try:
            ready = self.client.is_model_ready(spec.model, client_timeout=timeout_s)
        except InferenceServerException:
            ready = False
        if not ready:
            raise ConfigError(
                f"model {spec.model!r} is not ready on the server at {self.url}; "
                "check the name with the server's repository index"
            )
        meta = self.client.get_model_metadata(spec.model)
        config = self.client.get_model_config(spec.model).config
        self.input_name = meta.inputs[0].name
        self.input_dtype = meta.inputs[0].datatype
        self.output_name = meta.outputs[0].name
        self.max_batch = int(config.max_batch_size) or 1
        self.input_shape = tuple(int(d) for d in meta.inputs[0].shape[1:])

    def _inputs(self, x: np.ndarray):
        from tritonclient.utils import triton_to_np_dtype

        arr = np.ascontiguousarray(x, dtype=triton_to_np_dtype(self.input_dtype))
        inp = self._grpc.InferInput(self.input_name, list(arr.shape), self.input_dtype)
        inp.set_data_from_numpy(arr)
        return [inp]

    def infer(self, x: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(x), self.max_batch):
            res = self.client.infer(
                self.model_name, self._inputs(x[start : start + self.max_batch])
            )
            out.append(res.as_numpy(self.output_name))
        return np.concatenate(out).astype(np.float64, copy=False)

    def infer_async(self, x: np.ndarray, done: Done) -> None:
        """One request per ``max_batch`` rows; ``done`` gets each chunk's rows in order."""
        for start in range(0, len(x), self.max_batch):
            chunk = x[start : start + self.max_batch]

            def callback(result, error) -> None:
                if error is not None:
                    done(None, RuntimeError(f"{self.url}: {_first_line(error)}"))
                else:
                    done(result.as_numpy(self.output_name).astype(np.float64, copy=False), None)

            self.client.async_infer(self.model_name, self._inputs(chunk), callback)

    def close(self) -> None:
        self.client.close()


def open_target(spec: TargetSpec | str, timeout_s: float = 5.0) -> InprocessTarget | GrpcTarget:
    spec = parse_target(spec) if isinstance(spec, str) else spec
    if spec.kind == "inprocess":
        return InprocessTarget(spec.path)
    return GrpcTarget(spec, timeout_s)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


_STARTED = re.compile(r"server started.*grpc_port=(\d+)")


class ServerProcess:
    """``lightspeed serve REPO`` as a subprocess on free 127.0.0.1 ports (context manager).

    The ports are read back from the server's start-up log line, so there is
    no race between choosing a port and binding it. ``stop()`` sends SIGTERM
    (graceful drain) and kills after a timeout; it is safe to call twice.
    """

    def __init__(
        self,
        repo: str | Path,
        host: str = "127.0.0.1",
        start_timeout_s: float = 60.0,
        extra_args: tuple[str, ...] = (),
        log_file: str | Path | None = None,
    ) -> None:
        self.repo = Path(repo)
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.extra_args = extra_args
        self.log_file = Path(log_file) if log_file else None
        self.proc: subprocess.Popen | None = None
        self.grpc_port = 0
        self._log_lines: list[str] = []

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def target(self, model: str) -> str:
        return f"grpc://{self.host}:{self.grpc_port}/{model}"

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "lightspeed.cli",
            "serve",
            str(self.repo),
            "--host",
            self.host,
            "--grpc-port",
            "0",
            "--http-port",
            "-1",
            "--metrics-port",
            "-1",
            "--drain-timeout",
            "5",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        found: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(found,), daemon=True).start()
        try:
            self.grpc_port = found.get(timeout=self.start_timeout_s)
        except queue.Empty:
            self.stop()
            raise ServerUnreachableError(
                f"`lightspeed serve {self.repo}` did not start within {self.start_timeout_s:g} s: "
                + " | ".join(self._log_lines[-3:])
            ) from None
        if self.grpc_port is None:
            code = self.proc.wait()
            raise ServerUnreachableError(
                f"`lightspeed serve {self.repo}` exited with code {code}: "
                + " | ".join(self._log_lines[-3:])
            )

    def _pump(self, found: queue.Queue) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        sink = self.log_file.open("a") if self.log_file else None
        reported = False
        for line in self.proc.stderr:
            self._log_lines = [*self._log_lines[-50:], line.rstrip()]
            if sink:
                sink.write(line)
            m = _STARTED.search(line)
            if m and not reported:
                found.put(int(m.group(1)))
                reported = True
        if sink:
            sink.close()
        if not reported:
            found.put(None)

    def stop(self, timeout_s: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the benchmark process dies (no orphan servers)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
