"""Tensor datatypes, conversions and server identity shared by the gRPC and HTTP front ends.

The KServe v2 protocol names datatypes with strings ("FP32"), the model
configuration with enum names ("TYPE_FP32"); both map to one NumPy dtype.
Decoding never copies raw bytes: ``np.frombuffer`` views the request buffer.
"""

from __future__ import annotations

import numpy as np

from lightspeed.__about__ import __version__
from lightspeed.serve.errors import invalid

# what ServerMetadata (gRPC) and GET /v2 (HTTP) report
SERVER_NAME = "lightspeed"
SERVER_VERSION = __version__
EXTENSIONS = [
    "model_repository",
    "model_configuration",
    "statistics",
    "binary_tensor_data",
    "system_shared_memory",
    "cuda_shared_memory",
]

# v2 protocol datatype -> numpy dtype (BYTES/strings are not served).
DATATYPE_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_DATATYPE: dict[np.dtype, str] = {v: k for k, v in DATATYPE_TO_NUMPY.items()}

# typed-contents field of InferTensorContents for each datatype
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def config_type_to_datatype(type_name: str) -> str:
    """'TYPE_FP32' -> 'FP32' (model config enum name to protocol datatype)."""
    name = type_name.removeprefix("TYPE_")
    if name == "STRING":
        return "BYTES"
    return name


def datatype_to_config_type(datatype: str) -> str:
    """'FP32' -> 'TYPE_FP32'."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def numpy_dtype(datatype: str, what: str) -> np.dtype:
    """The numpy dtype for a protocol datatype, or INVALID_ARGUMENT naming ``what``."""
    try:
        return DATATYPE_TO_NUMPY[datatype]
    except KeyError:
        raise invalid(
            f"{what}: datatype {datatype!r} is not supported; use one of "
            + ", ".join(DATATYPE_TO_NUMPY)
        ) from None


def array_from_raw(raw: bytes | memoryview, datatype: str, shape: list[int], what: str):
    """View raw little-endian bytes as an array of ``shape`` (no copy), checking the byte count."""
    dtype = numpy_dtype(datatype, what)
    if any(d < 0 for d in shape):
        raise invalid(f"{what}: shape {list(shape)} has a negative dimension")
    count = 1
    for d in shape:
        count *= d
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise invalid(
            f"{what}: got {len(raw)} bytes of {datatype} data but shape {list(shape)} "
            f"needs {expected} bytes"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def array_from_list(values, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """Build an array from typed contents / JSON data, checking the element count."""
    dtype = numpy_dtype(datatype, what)
    if any(d < 0 for d in shape):
        raise invalid(f"{what}: shape {list(shape)} has a negative dimension")
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise invalid(f"{what}: data does not convert to {datatype}: {exc}") from None
    count = 1
    for d in shape:
        count *= d
    if arr.size != count:
        raise invalid(
            f"{what}: got {arr.size} elements but shape {list(shape)} needs {count} elements"
        )
    return arr.reshape(shape)
