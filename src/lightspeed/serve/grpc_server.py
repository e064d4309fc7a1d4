"""gRPC front end: Triton's ``inference.GRPCInferenceService`` on grpc.aio.

The servicer is the one generated in ``tritonclient.grpc.service_pb2_grpc``,
so message layouts and method names are exactly Triton's.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import grpc
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from lightspeed.serve.core import InferenceCore
from lightspeed.serve.errors import ServeError
from lightspeed.serve.grpc_codec import (
    decode_inputs,
    encode_response,
    request_params,
    shm_param,
    timeout_ns,
)
from lightspeed.serve.grpc_h2 import H2GrpcServer, bind_socket
from lightspeed.serve.protocol import EXTENSIONS, SERVER_NAME, SERVER_VERSION
from lightspeed.serve.stats import model_statistics, select_models

log = logging.getLogger("lightspeed.serve.grpc")

# calls gRPC core may park before the accept loop takes them (see create_grpc_server)
MAX_PENDING_CALLS = 1 << 20
_STATUS = {name: getattr(grpc.StatusCode, name) for name in grpc.StatusCode.__members__}


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Implements every RPC of the service on top of :class:`InferenceCore`."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core
        self.accepting = True
        self._streams: set[_StreamState] = set()

    async def _abort(self, context, exc: ServeError):
        await context.abort(_STATUS[exc.code], exc.message)

    def _start(self, request):
        """Decode, check and queue one request (no awaiting): (model, future, shm outputs)."""
        model = self.core.get(request.model_name, request.model_version)
        shm = self.core.shm
        inputs = decode_inputs(request, model, shm)
        rows = model.check(inputs, request.id)
        outputs = None
        shm_out = None
        if request.outputs:
            outputs = [o.name for o in request.outputs]
            model.check_outputs(outputs)
            for o in request.outputs:
                p = o.parameters
                if p and "shared_memory_region" in p:
                    shm_out = shm_out or {}
                    shm_out[o.name] = (
                        p["shared_memory_region"].string_param,
                        shm_param(p, "shared_memory_offset", "int64_param"),
                        shm_param(p, "shared_memory_byte_size", "int64_param"),
                    )
        params = request_params(request) if request.parameters else None
        future = model.infer(inputs, rows, outputs, timeout_ns(request), request.id, params)
        return model, future, shm_out

    async def _infer(self, request):
        model, future, shm_out = self._start(request)
        return encode_response(model, request.id, await future, shm_out, self.core.shm)

    # ------------------------------------------------------------------ health / metadata
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.accepting and not self.core.loading)

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.core.ready(request.name, request.version))

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS
        )

    async def ModelMetadata(self, request, context):
        try:
            model = self.core.get(request.name, request.version)
        except ServeError as exc:
            return await self._abort(context, exc)
        return json_format.ParseDict(model.metadata(), pb.ModelMetadataResponse())

    async def ModelConfig(self, request, context):
        try:
            model = self.core.get(request.name, request.version)
        except ServeError as exc:
            return await self._abort(context, exc)
        return pb.ModelConfigResponse(config=model.config)

    async def ModelStatistics(self, request, context):
        try:
            models = select_models(self.core, request.name, request.version)
        except ServeError as exc:
            return await self._abort(context, exc)
        return json_format.ParseDict(
            {"model_stats": [model_statistics(m) for m in models]},
            pb.ModelStatisticsResponse(),
        )

    # ------------------------------------------------------------------ inference
    async def ModelInfer(self, request, context):
        try:
            return await self._infer(request)
        except ServeError as exc:
            return await self._abort(context, exc)

    async def ModelStreamInfer(self, request_iterator, context):
        """Requests on a stream run concurrently (the batcher can merge them); responses
        go back as they finish, carrying the request id. No task per request: a done
        callback encodes each response, which keeps a stream cheaper than unary calls.
        At shutdown the stream ends once its accepted requests are answered."""
        state = _StreamState()
        self._streams.add(state)

        def finished(request, model, shm_out, future) -> None:
            if future.cancelled():
                state.put(_stream_error(request, "request cancelled"))
                return
            exc = future.exception()
            if exc is None:
                try:
                    resp = encode_response(
                        model, request.id, future.result(), shm_out, self.core.shm
                    )
                    state.put(pb.ModelStreamInferResponse(infer_response=resp))
                except ServeError as err:
                    state.put(_stream_error(request, err.message))
            elif isinstance(exc, ServeError):
                state.put(_stream_error(request, exc.message))
            else:
                state.put(_stream_error(request, f"internal error: {exc}"))

        async def reader() -> None:
            try:
                async for request in request_iterator:
                    state.pending += 1
                    if state.closing:
                        state.put(_stream_error(request, "server is shutting down"))
                        continue
                    try:
                        model, future, shm_out = self._start(request)
                    except ServeError as exc:
                        state.put(_stream_error(request, exc.message))
                        continue
                    except Exception as exc:  # a bug must not end other requests' stream
                        log.exception("stream request failed")
                        state.put(_stream_error(request, f"internal error: {exc}"))
                        continue
                    future.add_done_callback(partial(finished, request, model, shm_out))
            finally:
                state.reading = False
                state.maybe_end()

        read = asyncio.ensure_future(reader())
        try:
            while (item := await state.out.get()) is not None:
                yield item
        finally:
            read.cancel()
            self._streams.discard(state)

    def begin_shutdown(self) -> None:
        """Refuse new work; open streams end as soon as their accepted requests are answered."""
        self.accepting = False
        for state in list(self._streams):
            state.closing = True
            state.maybe_end()

    # ------------------------------------------------------------------ repository
    async def RepositoryIndex(self, request, context):
        entries = self.core.index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(**e) for e in entries]
        )

    async def RepositoryModelLoad(self, request, context):
        override = None
        param = request.parameters.get("config")
        if param is not None:
            override = param.string_param
        try:
            await self.core.load(request.model_name, override)
        except ServeError as exc:
            return await self._abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        try:
            await self.core.unload(request.model_name)
        except ServeError as exc:
            return await self._abort(context, exc)
        return pb.RepositoryModelUnloadResponse()

    # ------------------------------------------------------------------ shared memory
    async def SystemSharedMemoryStatus(self, request, context):
        try:
            regions = self.core.shm.status(request.name)
        except ServeError as exc:
            return await self._abort(context, exc)
        resp = pb.SystemSharedMemoryStatusResponse()
        for r in regions:
            resp.regions[r["name"]].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(**r))
        return resp

    async def SystemSharedMemoryRegister(self, request, context):
        try:
            self.core.shm.register(request.name, request.key, request.offset, request.byte_size)
        except ServeError as exc:
            return await self._abort(context, exc)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(self, request, context):
        self.core.shm.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(self, request, context):
        try:
            regions = self.core.shm.cuda_status(request.name)
        except ServeError as exc:
            return await self._abort(context, exc)
        resp = pb.CudaSharedMemoryStatusResponse()
        for r in regions:
            resp.regions[r["name"]].CopyFrom(pb.CudaSharedMemoryStatusResponse.RegionStatus(**r))
        return resp

    async def CudaSharedMemoryRegister(self, request, context):
        try:
            self.core.shm.register_cuda(
                request.name, request.raw_handle, request.device_id, request.byte_size
            )
        except ServeError as exc:
            return await self._abort(context, exc)
        return pb.CudaSharedMemoryRegisterResponse()

    async def CudaSharedMemoryUnregister(self, request, context):
        self.core.shm.unregister_cuda(request.name)
        return pb.CudaSharedMemoryUnregisterResponse()


class _StreamState:
    """Bookkeeping of one ModelStreamInfer call."""

    def __init__(self) -> None:
        self.out: asyncio.Queue = asyncio.Queue()
        self.pending = 0
        self.reading = True
        self.closing = False
        self._ended = False

    def put(self, item) -> None:
        self.pending -= 1
        self.out.put_nowait(item)
        self.maybe_end()

    def maybe_end(self) -> None:
        if (not self.reading or self.closing) and self.pending == 0 and not self._ended:
            self._ended = True
            self.out.put_nowait(None)


def _stream_error(request, message: str):
    return pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def create_grpc_server(
    core: InferenceCore,
    address: str,
    max_message_bytes: int,
    reuse_port: bool = False,
    frontend: str = "h2",
) -> tuple[object, InferenceServicer, int]:
    """A gRPC server bound to ``address`` ("host:port", port 0 = any free port).

    ``frontend``: "h2", our HTTP/2 transport (:mod:`lightspeed.serve.grpc_h2`, the
    default: about ten times less CPU per call), or "grpcio", grpc.aio's server.
    Both run the same servicer. ``reuse_port``: share the port with the other
    ``--workers`` processes."""
    servicer = InferenceServicer(core)
    if frontend == "h2":
        host, _, port_text = address.rpartition(":")
        sock = bind_socket(host.strip("[]"), int(port_text), reuse_port)
        return H2GrpcServer(servicer, sock, max_message_bytes), servicer, sock.getsockname()[1]
    if frontend != "grpcio":
        raise ServeError("INVALID_ARGUMENT", f"unknown gRPC front end {frontend!r}: h2 or grpcio")
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", int(reuse_port)),
        # gRPC core parks calls that arrive before the (one-at-a-time) grpc.aio accept loop
        # asks for them. Past 1000 parked calls it drops a growing random share, up to all
        # of them at 3000, and the client sees a bare CANCELLED that the server never
        # hears of. Raise both limits far past any queue bound: overload is then refused
        # by the model queue with a logged RESOURCE_EXHAUSTED instead.
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise ServeError("UNAVAILABLE", f"cannot bind the gRPC port {address}; is it in use?")
    return server, servicer, port
