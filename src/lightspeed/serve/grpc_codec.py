"""ModelInferRequest decoding and ModelInferResponse encoding, shared by both gRPC front ends.

:mod:`lightspeed.serve.grpc_server` (the servicer, grpcio's server) and
:mod:`lightspeed.serve.grpc_h2` (our HTTP/2 transport) both build on this module.
"""

from __future__ import annotations

from tritonclient.grpc import service_pb2 as pb

from lightspeed.serve.core import LoadedModel
from lightspeed.serve.errors import invalid
from lightspeed.serve.protocol import CONTENTS_FIELD, array_from_list, array_from_raw
from lightspeed.serve.shm import SharedMemoryRegistry


def shm_param(params, key: str, kind: str, default=0):
    return getattr(params[key], kind) if key in params else default


def decode_inputs(request, model: LoadedModel, shm: SharedMemoryRegistry | None = None) -> dict:
    """ModelInferRequest inputs -> {name: array}; raw and shared-memory data are not copied."""
    raw = request.raw_input_contents
    tensors = request.inputs
    inputs = {}
    specs = model.inputs
    n_raw = 0
    for t in tensors:
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
        params = t.parameters
        if params and "shared_memory_region" in params and shm is not None:
            data = shm.view(
                params["shared_memory_region"].string_param,
                shm_param(params, "shared_memory_offset", "int64_param"),
                shm_param(params, "shared_memory_byte_size", "int64_param"),
                what,
            )
            inputs[name] = array_from_raw(data, t.datatype, t.shape, what)
        elif raw:
            if n_raw >= len(raw):
                raise invalid(
                    f"request has fewer raw_input_contents ({len(raw)}) than inputs sent "
                    "without shared memory; send one raw buffer per input"
                )
            inputs[name] = array_from_raw(raw[n_raw], t.datatype, t.shape, what)
            n_raw += 1
        else:
            field = CONTENTS_FIELD.get(t.datatype)
            if field is None:
                raise invalid(f"{what}: {t.datatype} must be sent in raw_input_contents")
            inputs[name] = array_from_list(getattr(t.contents, field), t.datatype, t.shape, what)
    if n_raw != len(raw):
        raise invalid(
            f"request has {len(raw)} raw_input_contents but {n_raw} inputs use them; "
            "send one raw buffer per input"
        )
    return inputs


def timeout_ns(request) -> int:
    param = request.parameters.get("timeout")
    if param is None:
        return 0
    return int(param.int64_param) * 1000  # Triton: microseconds


def request_params(request) -> dict:
    """The request's parameters as plain values (priority, sequence_id, ...)."""
    out: dict = {}
    for key, p in request.parameters.items():
        which = p.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(p, which)
    return out


def encode_response(
    model: LoadedModel,
    request_id: str,
    result: dict,
    shm_out: dict | None = None,
    shm: SharedMemoryRegistry | None = None,
):
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
        out = outputs.add(name=name, datatype=spec.datatype, shape=arr.shape)
        if shm_out and name in shm_out:
            region, offset, size = shm_out[name]
            assert shm is not None
            shm.write(region, offset, size, arr.tobytes(), f"output '{name}'")
            out.parameters["shared_memory_region"].string_param = region
            out.parameters["shared_memory_byte_size"].int64_param = arr.nbytes
            if offset:
                out.parameters["shared_memory_offset"].int64_param = offset
            raws.append(b"")  # keeps raw_output_contents aligned with outputs
        else:
            raws.append(arr.tobytes())
    return resp
