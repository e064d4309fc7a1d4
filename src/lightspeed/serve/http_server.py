"""HTTP/REST front end: KServe v2 endpoints plus Triton's binary tensor extension.

A request body may be a JSON header followed by raw tensor bytes; the header
length is in ``Inference-Header-Content-Length`` and each binary input says
its size in ``parameters.binary_data_size``. Outputs are returned the same
way when asked (``binary_data`` per output or ``binary_data_output`` for all),
which is what ``tritonclient.http`` does by default.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging

from aiohttp import web
from google.protobuf import json_format

from lightspeed.serve.core import InferenceCore, LoadedModel
from lightspeed.serve.errors import ServeError, invalid
from lightspeed.serve.metrics import render
from lightspeed.serve.protocol import (
    EXTENSIONS,
    SERVER_NAME,
    SERVER_VERSION,
    array_from_list,
    array_from_raw,
)
from lightspeed.serve.stats import model_statistics, select_models

log = logging.getLogger("lightspeed.serve.http")
HEADER_LENGTH = "Inference-Header-Content-Length"


def _error(exc: ServeError) -> web.Response:
    return web.json_response({"error": exc.message}, status=exc.http_status)


def _decode_infer(body: bytes, header_len: int | None, model: LoadedModel, shm=None):
    """Parse an infer request body -> (inputs, outputs, binary_out, request_dict)."""
    if header_len is not None:
        if header_len < 0 or header_len > len(body):
            raise invalid(
                f"{HEADER_LENGTH} is {header_len} but the body has only {len(body)} bytes"
            )
        head, binary = body[:header_len], memoryview(body)[header_len:]
    else:
        head, binary = body, memoryview(b"")
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise invalid('request JSON must be an object with an "inputs" list')
    specs = model.inputs
    inputs = {}
    offset = 0
    for t in req["inputs"]:
        if not isinstance(t, dict):
            raise invalid("each entry of inputs must be an object")
        name, datatype, shape = t.get("name"), t.get("datatype"), t.get("shape")
        spec = specs.get(name)  # type: ignore[arg-type]
        if spec is None:
            raise invalid(
                f"model '{model.name}' has no input named {name!r}; its inputs are {list(specs)}"
            )
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise invalid(f"input '{name}': shape must be a list of integers")
        if datatype != spec.datatype:
            raise invalid(
                f"model '{model.name}': input '{name}' has datatype {datatype}, "
                f"expected {spec.datatype}"
            )
        what = f"input '{name}'"
        params = t.get("parameters") or {}
        if not isinstance(params, dict):
            raise invalid(f"{what}: parameters must be a JSON object")
        size = params.get("binary_data_size")
        region = params.get("shared_memory_region")
        if region is not None and shm is not None:
            data = shm.view(
                region,
                int(params.get("shared_memory_offset", 0)),
                int(params.get("shared_memory_byte_size", 0)),
                what,
            )
            inputs[name] = array_from_raw(data, datatype, shape, what)
        elif size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise invalid(
                    f"{what}: binary_data_size {size} runs past the {len(binary)} binary bytes"
                )
            inputs[name] = array_from_raw(binary[offset : offset + size], datatype, shape, what)
            offset += size
        elif "data" in t:
            inputs[name] = array_from_list(t["data"], datatype, shape, what)
        else:
            raise invalid(f"{what}: has neither data nor parameters.binary_data_size")
    if offset != len(binary):
        raise invalid(f"{len(binary) - offset} binary bytes follow the inputs unclaimed")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise invalid("request parameters must be a JSON object")
    binary_all = bool(params.get("binary_data_output", False))
    outputs = None
    binary_out: dict[str, bool] = {}
    shm_out: dict[str, tuple[str, int, int]] = {}
    if req.get("outputs"):
        outputs = []
        for o in req["outputs"]:
            name = o.get("name") if isinstance(o, dict) else None
            if not isinstance(name, str):
                raise invalid("each entry of outputs must be an object with a name")
            outputs.append(name)
            oparams = o.get("parameters") or {}
            if not isinstance(oparams, dict):
                raise invalid(f"output '{name}': parameters must be a JSON object")
            binary_out[name] = bool(oparams.get("binary_data", binary_all))
            if "shared_memory_region" in oparams:
                shm_out[name] = (
                    oparams["shared_memory_region"],
                    int(oparams.get("shared_memory_offset", 0)),
                    int(oparams.get("shared_memory_byte_size", 0)),
                )
        model.check_outputs(outputs)
    timeout = params.get("timeout", 0)
    if not isinstance(timeout, int):
        raise invalid("parameters.timeout must be an integer number of microseconds")
    return inputs, outputs, binary_out, binary_all, req.get("id"), timeout * 1000, shm_out, params


def _encode_infer(
    model: LoadedModel, result: dict, binary_out: dict, binary_all: bool, rid, shm_out, shm
):
    outputs = []
    blobs = []
    for name, arr in result.items():
        spec = model.outputs[name]
        if arr.dtype != spec.dtype:
            arr = arr.astype(spec.dtype)
        entry: dict = {"name": name, "datatype": spec.datatype, "shape": list(arr.shape)}
        if name in shm_out:
            region, offset, size = shm_out[name]
            shm.write(region, offset, size, arr.tobytes(), f"output '{name}'")
            entry["parameters"] = {
                "shared_memory_region": region,
                "shared_memory_byte_size": arr.nbytes,
            }
            if offset:
                entry["parameters"]["shared_memory_offset"] = offset
        elif binary_out.get(name, binary_all):
            blob = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        outputs.append(entry)
    resp: dict = {"model_name": model.name, "model_version": model.version_str, "outputs": outputs}
    if rid:
        resp["id"] = rid
    head = json.dumps(resp).encode()
    if not blobs:
        return web.Response(body=head, content_type="application/json")
    return web.Response(
        body=b"".join([head, *blobs]),
        headers={HEADER_LENGTH: str(len(head))},
        content_type="application/octet-stream",
    )


class HttpFrontEnd:
    """aiohttp handlers bound to one core."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core
        self.accepting = True

    def _model(self, request: web.Request) -> LoadedModel:
        info = request.match_info
        return self.core.get(info["model"], info.get("version", ""))

    async def live(self, request):
        return web.Response(status=200)

    async def ready(self, request):
        return web.Response(status=200 if self.accepting and not self.core.loading else 503)

    async def server_metadata(self, request):
        return web.json_response(
            {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}
        )

    async def model_ready(self, request):
        info = request.match_info
        ok = self.core.ready(info["model"], info.get("version", ""))
        return web.Response(status=200 if ok else 400)

    async def model_metadata(self, request):
        try:
            return web.json_response(self._model(request).metadata())
        except ServeError as exc:
            return _error(exc)

    async def model_config(self, request):
        try:
            config = self._model(request).config
        except ServeError as exc:
            return _error(exc)
        return web.json_response(
            json_format.MessageToDict(config, preserving_proto_field_name=True)
        )

    async def model_stats(self, request):
        info = request.match_info
        try:
            models = select_models(self.core, info.get("model", ""), info.get("version", ""))
        except ServeError as exc:
            return _error(exc)
        return web.json_response({"model_stats": [model_statistics(m) for m in models]})

    async def infer(self, request):
        try:
            model = self._model(request)
            body = await request.read()
            hl = request.headers.get(HEADER_LENGTH)
            header_len = None
            if hl is not None:
                try:
                    header_len = int(hl)
                except ValueError:
                    raise invalid(f"{HEADER_LENGTH} must be an integer, got {hl!r}") from None
            inputs, outputs, binary_out, binary_all, rid, timeout, shm_out, params = _decode_infer(
                body, header_len, model, self.core.shm
            )
            rows = model.check(inputs, str(rid or ""))
            result = await model.infer(inputs, rows, outputs, timeout, str(rid or ""), params)
            return _encode_infer(model, result, binary_out, binary_all, rid, shm_out, self.core.shm)
        except ServeError as exc:
            return _error(exc)

    async def shm_status(self, request):
        try:
            return web.json_response(self.core.shm.status(request.match_info.get("region", "")))
        except ServeError as exc:
            return _error(exc)

    async def shm_register(self, request):
        try:
            body = await request.json()
        except ValueError:
            return _error(invalid("register body must be JSON with key, offset, byte_size"))
        try:
            if not isinstance(body, dict):
                raise invalid("register body must be a JSON object")
            self.core.shm.register(
                request.match_info["region"],
                str(body.get("key", "")),
                int(body.get("offset", 0)),
                int(body.get("byte_size", 0)),
            )
        except ServeError as exc:
            return _error(exc)
        return web.Response(status=200)

    async def shm_unregister(self, request):
        self.core.shm.unregister(request.match_info.get("region", ""))
        return web.Response(status=200)

    async def cuda_shm_status(self, request):
        try:
            regions = self.core.shm.cuda_status(request.match_info.get("region", ""))
            return web.json_response(regions)
        except ServeError as exc:
            return _error(exc)

    async def cuda_shm_register(self, request):
        try:
            body = await request.json()
        except ValueError:
            return _error(
                invalid("register body must be JSON with raw_handle, device_id, byte_size")
            )
        try:
            handle = body.get("raw_handle") if isinstance(body, dict) else None
            b64 = handle.get("b64") if isinstance(handle, dict) else None
            if not isinstance(b64, str | bytes):
                raise invalid('CUDA register body needs "raw_handle": {"b64": <base64 handle>}')
            try:
                raw = base64.b64decode(b64, validate=True)
            except (ValueError, binascii.Error):
                raise invalid("raw_handle.b64 is not valid base64") from None
            self.core.shm.register_cuda(
                request.match_info["region"],
                raw,
                int(body.get("device_id", 0)),
                int(body.get("byte_size", 0)),
            )
        except (TypeError, ValueError):
            return _error(invalid("device_id and byte_size must be integers"))
        except ServeError as exc:
            return _error(exc)
        return web.Response(status=200)

    async def cuda_shm_unregister(self, request):
        self.core.shm.unregister_cuda(request.match_info.get("region", ""))
        return web.Response(status=200)

    async def repo_index(self, request):
        ready_only = False
        if request.can_read_body:
            try:
                body = await request.json()
                ready_only = bool(body.get("ready", False)) if isinstance(body, dict) else False
            except ValueError:
                return _error(invalid("repository index body must be JSON"))
        return web.json_response(self.core.index(ready_only))

    async def repo_load(self, request):
        override = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return _error(invalid("load request body must be JSON"))
            params = (body or {}).get("parameters") or {}
            override = params.get("config")
        try:
            await self.core.load(request.match_info["model"], override)
        except ServeError as exc:
            return _error(exc)
        return web.Response(status=200)

    async def repo_unload(self, request):
        try:
            await self.core.unload(request.match_info["model"])
        except ServeError as exc:
            return _error(exc)
        return web.Response(status=200)


def create_http_app(
    core: InferenceCore, max_message_bytes: int
) -> tuple[web.Application, HttpFrontEnd]:
    fe = HttpFrontEnd(core)
    app = web.Application(client_max_size=max_message_bytes)
    r = app.router
    r.add_get("/v2/health/live", fe.live)
    r.add_get("/v2/health/ready", fe.ready)
    r.add_get("/v2", fe.server_metadata)
    r.add_get("/v2/models/stats", fe.model_stats)
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        r.add_get(base, fe.model_metadata)
        r.add_get(base + "/ready", fe.model_ready)
        r.add_get(base + "/config", fe.model_config)
        r.add_get(base + "/stats", fe.model_stats)
        r.add_post(base + "/infer", fe.infer)
    r.add_get("/v2/systemsharedmemory/status", fe.shm_status)
    r.add_get("/v2/systemsharedmemory/region/{region}/status", fe.shm_status)
    r.add_post("/v2/systemsharedmemory/region/{region}/register", fe.shm_register)
    r.add_post("/v2/systemsharedmemory/unregister", fe.shm_unregister)
    r.add_post("/v2/systemsharedmemory/region/{region}/unregister", fe.shm_unregister)
    r.add_get("/v2/cudasharedmemory/status", fe.cuda_shm_status)
    r.add_get("/v2/cudasharedmemory/region/{region}/status", fe.cuda_shm_status)
    r.add_post("/v2/cudasharedmemory/region/{region}/register", fe.cuda_shm_register)
    r.add_post("/v2/cudasharedmemory/unregister", fe.cuda_shm_unregister)
    r.add_post("/v2/cudasharedmemory/region/{region}/unregister", fe.cuda_shm_unregister)
    r.add_post("/v2/repository/index", fe.repo_index)
    r.add_post("/v2/repository/models/{model}/load", fe.repo_load)
    r.add_post("/v2/repository/models/{model}/unload", fe.repo_unload)
    return app, fe


def create_metrics_app(core: InferenceCore) -> web.Application:
    async def metrics(request):
        return web.Response(text=render(core.loaded()), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
