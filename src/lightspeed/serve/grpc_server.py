"""gRPC front end: Triton's ``inference.GRPCInferenceService`` on grpc.aio.

The servicer is the one generated in ``tritonclient.grpc.service_pb2_grpc``,
so message layouts and method names are exactly Triton's.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from lightspeed.serve.core import InferenceCore, LoadedModel
from lightspeed.serve.errors import ServeError, invalid
from lightspeed.serve.protocol import CONTENTS_FIELD, array_from_list, array_from_raw
from lightspeed.serve.stats import model_statistics, select_models

log = logging.getLogger("lightspeed.serve.grpc")

SERVER_NAME = "lightspeed"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["classification", "model_repository", "model_configuration", "statistics"]
_STATUS = {name: getattr(grpc.StatusCode, name) for name in grpc.StatusCode.__members__}


def decode_inputs(request, model: LoadedModel) -> dict:
    """ModelInferRequest inputs -> {name: array}; raw contents are viewed, not copied."""
    raw = request.raw_input_contents
    tensors = request.inputs
    if raw and len(raw) != len(tensors):
        raise invalid(
            f"request has {len(tensors)} inputs but {len(raw)} raw_input_contents; "
            "send one raw buffer per input"
        )
    inputs = {}
    specs = model.inputs
    for i, t in enumerate(tensors):
        name = t.name
        spec = specs.get(name)
        if spec is None:
            raise invalid(
                f"model '{model.name}' has no input named {name!r}; its inputs are {list(specs)}"
            )
        if t.datatype != spec.datatype:
            raise invalid(
                f"model '{model.name}': input '{name}' has datatype {t.datatype}, "
                f"expected {spec.datatype}"
            )
        what = f"input '{name}'"
        if raw:
            inputs[name] = array_from_raw(raw[i], t.datatype, t.shape, what)
        else:
            field = CONTENTS_FIELD.get(t.datatype)
            if field is None:
                raise invalid(f"{what}: {t.datatype} must be sent in raw_input_contents")
            inputs[name] = array_from_list(getattr(t.contents, field), t.datatype, t.shape, what)
    return inputs


def _timeout_ns(request) -> int:
    param = request.parameters.get("timeout")
    if param is None:
        return 0
    return int(param.int64_param) * 1000  # Triton: microseconds


def encode_response(model: LoadedModel, request_id: str, result: dict):
    resp = pb.ModelInferResponse(
        model_name=model.name, model_version=model.version_str, id=request_id
    )
    outputs = resp.outputs
    raws = resp.raw_output_contents
    specs = model.outputs
    for name, arr in result.items():
        spec = specs[name]
        if arr.dtype != spec.dtype:
            arr = arr.astype(spec.dtype)
        outputs.add(name=name, datatype=spec.datatype, shape=arr.shape)
        raws.append(arr.tobytes())
    return resp


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Implements every RPC of the service on top of :class:`InferenceCore`."""

    def __init__(self, core: InferenceCore, live: asyncio.Event | None = None) -> None:
        self.core = core
        self.accepting = True

    async def _abort(self, context, exc: ServeError):
        await context.abort(_STATUS[exc.code], exc.message)

    async def _infer(self, request):
        model = self.core.get(request.model_name, request.model_version)
        inputs = decode_inputs(request, model)
        rows = model.check(inputs)
        outputs = None
        if request.outputs:
            outputs = [o.name for o in request.outputs]
            model.check_outputs(outputs)
        result = await model.infer(inputs, rows, outputs, _timeout_ns(request))
        return encode_response(model, request.id, result)

    # ------------------------------------------------------------------ health / metadata
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.accepting)

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
        """Each request runs concurrently (so the batcher can merge them); responses carry ids."""
        queue: asyncio.Queue = asyncio.Queue()

        async def one(request):
            try:
                resp = await self._infer(request)
                await queue.put(pb.ModelStreamInferResponse(infer_response=resp))
            except ServeError as exc:
                await queue.put(_stream_error(request, exc.message))
            except Exception as exc:  # keep the stream alive for other requests
                log.exception("stream request failed")
                await queue.put(_stream_error(request, f"internal error: {exc}"))

        async def reader():
            tasks: set[asyncio.Task] = set()
            try:
                async for request in request_iterator:
                    task = asyncio.ensure_future(one(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                await queue.put(None)

        read = asyncio.ensure_future(reader())
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            read.cancel()

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

    # ------------------------------------------------------------------ not offered
    async def _unimplemented(self, request, context, what: str):
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{what} is not supported by the lightspeed server"
        )

    async def SystemSharedMemoryStatus(self, request, context):
        return pb.SystemSharedMemoryStatusResponse()

    async def SystemSharedMemoryRegister(self, request, context):
        await self._unimplemented(request, context, "system shared memory")

    async def SystemSharedMemoryUnregister(self, request, context):
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(self, request, context):
        return pb.CudaSharedMemoryStatusResponse()

    async def CudaSharedMemoryRegister(self, request, context):
        await self._unimplemented(request, context, "CUDA shared memory")

    async def CudaSharedMemoryUnregister(self, request, context):
        return pb.CudaSharedMemoryUnregisterResponse()


def _stream_error(request, message: str):
    return pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def create_grpc_server(
    core: InferenceCore, address: str, max_message_bytes: int
) -> tuple[grpc.aio.Server, InferenceServicer, int]:
    """A grpc.aio server bound to ``address`` ("host:port", port 0 = any free port)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    servicer = InferenceServicer(core)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise ServeError("UNAVAILABLE", f"cannot bind the gRPC port {address}; is it in use?")
    return server, servicer, port
