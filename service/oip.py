"""Open Inference Protocol (KServe v2) tensor bodies: parsing a request into arrays and
encoding the outputs, in the protocol's JSON form or with Triton's binary tensor extension.

A JSON request carries each input's values in `data` (row-major, flat or nested). With the
binary extension the body is the JSON header (`Inference-Header-Content-Length` bytes) followed
by raw tensors, in input order, each input saying its byte count in
`parameters.binary_data_size`; outputs asked for with `parameters.binary_data` (or the
request's `binary_data_output`) come back the same way. Only FP32 tensors exist here: the
artifacts take `clips` (N, C, T, H, W) float32 and give `logits` (N, K) and `embedding` (N, D).
Pure functions, no I/O: the route reads the body and sends what these return. The protocol's
request and response models are here too (its JSON field names and shapes, so that Triton's
and KServe's clients read them; `parameters` are free-form objects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import BadRequest

INFERENCE_HEADER = "Inference-Header-Content-Length"
#: Protocol datatype -> the array dtype on the wire (little-endian, as the extension says).
DATATYPES = {"FP32": np.dtype("<f4")}
#: Manifest tensor dtype -> protocol datatype, for the model metadata.
PROTOCOL_TYPES = {"float32": "FP32", "float16": "FP16"}
EXTENSIONS = ["binary_tensor_data"]


# ---------------------------------------------------------------------------------- models


class ServerMetadata(BaseModel):
    name: str = Field(examples=["actserve"])
    version: str = Field(examples=["0.1.0"])
    extensions: list[str] = Field(
        description="Protocol extensions served.", examples=[["binary_tensor_data"]]
    )


class TensorMetadata(BaseModel):
    name: str = Field(examples=["clips"])
    datatype: str = Field(description="The protocol's tensor type.", examples=["FP32"])
    shape: list[int] = Field(
        description="-1 for the variable batch axis.", examples=[[-1, 3, 16, 112, 112]]
    )


class ModelMetadata(BaseModel):
    name: str = Field(examples=["r3d_18"])
    versions: list[str] = Field(
        description="The versions of the model that are loaded here.", examples=[["1", "2"]]
    )
    platform: str = Field(
        description="The runtime the version answering this call runs on.",
        examples=["onnxruntime 1.31.1 CPU fp32 (model.onnx)"],
    )
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ReadinessV2(BaseModel):
    name: str | None = Field(None, description="The model, for a model's readiness.")
    ready: bool


class RequestInput(BaseModel):
    name: str = Field(examples=["clips"])
    shape: list[int] = Field(examples=[[1, 3, 16, 112, 112]])
    datatype: str = Field(examples=["FP32"])
    parameters: dict[str, Any] | None = Field(
        None,
        description="`binary_data_size`: the tensor is that many bytes of the binary part "
        "of the body (binary tensor extension) instead of `data`.",
    )
    data: list[Any] | None = Field(
        None, description="The values in row-major order, flat or nested."
    )


class RequestOutput(BaseModel):
    name: str = Field(examples=["logits"])
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data: true` returns the tensor in the binary part."
    )


class InferenceRequest(BaseModel):
    id: str | None = Field(None, description="Echoed in the response.")
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_output: true` returns every output in binary."
    )
    inputs: list[RequestInput] = Field(
        description="One tensor: `clips`, the model's preprocessed views (N, C, T, H, W)."
    )
    outputs: list[RequestOutput] | None = Field(
        None, description="The outputs wanted (default: logits and embedding)."
    )


class ResponseOutput(BaseModel):
    name: str = Field(examples=["logits"])
    shape: list[int] = Field(examples=[[1, 400]])
    datatype: str = Field(examples=["FP32"])
    parameters: dict[str, Any] | None = None
    data: list[float] | None = Field(None, description="Row-major values (absent in binary).")


class InferenceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(examples=["r3d_18"])
    model_version: str | None = Field(None, examples=["2"])
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class InferenceError(BaseModel):
    """The protocol's error body, `error` a message; actserve adds its stable code."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(examples=["model 'r3d_19' does not exist (served models: r3d_18)"])
    code: str = Field(description="actserve's stable error name.", examples=["model_not_found"])
    request_id: str | None = None


# --------------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class ParsedRequest:
    request: InferenceRequest
    inputs: dict[str, np.ndarray]


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """The request's JSON and its input tensors, with the declared shapes."""
    header, binary = _split(body, header_length)
    try:
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"not an inference request: {problems}") from None
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name in inputs:
            raise BadRequest(f"input {tensor.name!r} is given twice")
        size = _binary_size(tensor)
        if size is None:
            inputs[tensor.name] = _from_json(tensor)
        else:
            inputs[tensor.name] = _from_binary(tensor, binary[offset : offset + size], size)
            offset += size
    if offset != len(binary):
        raise BadRequest(
            f"the body has {len(binary):,} bytes after the JSON header; the inputs' "
            f"binary_data_size values add up to {offset:,}"
        )
    return ParsedRequest(request, inputs)


def binary_outputs(request: InferenceRequest, available: tuple[str, ...]) -> dict[str, bool]:
    """The outputs to return, each with whether it goes in the binary part."""
    everything = bool((request.parameters or {}).get("binary_data_output", False))
    if request.outputs is None:
        return dict.fromkeys(available, everything)
    chosen: dict[str, bool] = {}
    for output in request.outputs:
        if output.name not in available:
            raise BadRequest(f"no output {output.name!r}; this model gives {', '.join(available)}")
        params = output.parameters or {}
        _refuse_shared_memory(params, f"output {output.name!r}")
        chosen[output.name] = bool(params.get("binary_data", everything))
    return chosen


def encode_response(
    response: InferenceResponse, arrays: dict[str, np.ndarray], binary: dict[str, bool]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    tails: list[bytes] = []
    outputs = []
    for name, want_binary in binary.items():
        array = np.ascontiguousarray(arrays[name], dtype=DATATYPES["FP32"])
        output = ResponseOutput(name=name, shape=list(array.shape), datatype="FP32")
        if want_binary:
            raw = array.tobytes()
            output.parameters = {"binary_data_size": len(raw)}
            tails.append(raw)
        else:
            output.data = array.ravel().tolist()
        outputs.append(output)
    header = response.model_copy(update={"outputs": outputs}).model_dump_json(exclude_none=True)
    encoded = header.encode()
    if not tails:
        return encoded, None
    return encoded + b"".join(tails), len(encoded)


# ---------------------------------------------------------------------------------- parts


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise BadRequest(
            f"{INFERENCE_HEADER} is {header_length!r}; the body has {len(body):,} bytes"
        )
    length = int(header_length)
    return body[:length], body[length:]


def _binary_size(tensor: RequestInput) -> int | None:
    params = tensor.parameters or {}
    _refuse_shared_memory(params, f"input {tensor.name!r}")
    size = params.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"input {tensor.name!r}: binary_data_size must be a byte count")
    if tensor.data is not None:
        raise BadRequest(f"input {tensor.name!r} has both data and binary_data_size")
    return size


def _refuse_shared_memory(params: dict, what: str) -> None:
    if any(key.startswith("shared_memory") for key in params):
        raise BadRequest(f"{what}: the shared-memory extension is not supported; send the data")


def _dtype(tensor: RequestInput) -> np.dtype:
    if tensor.datatype not in DATATYPES:
        raise BadRequest(
            f"input {tensor.name!r} is {tensor.datatype}; this server takes {', '.join(DATATYPES)}"
        )
    if any(d < 0 for d in tensor.shape):
        raise BadRequest(f"input {tensor.name!r}: shape {tensor.shape} has a negative axis")
    return DATATYPES[tensor.datatype]


def _from_json(tensor: RequestInput) -> np.ndarray:
    dtype = _dtype(tensor)
    if tensor.data is None:
        raise BadRequest(f"input {tensor.name!r} has neither data nor binary_data_size")
    try:
        values = np.asarray(tensor.data, dtype=dtype)
    except (TypeError, ValueError):
        raise BadRequest(f"input {tensor.name!r}: data must be numbers") from None
    if values.size != math.prod(tensor.shape):
        raise BadRequest(f"input {tensor.name!r}: {values.size:,} values for shape {tensor.shape}")
    return values.reshape(tensor.shape)


def _from_binary(tensor: RequestInput, raw: bytes, size: int) -> np.ndarray:
    dtype = _dtype(tensor)
    expected = math.prod(tensor.shape) * dtype.itemsize
    if size != expected or len(raw) != size:
        raise BadRequest(
            f"input {tensor.name!r}: {len(raw):,} bytes for shape {tensor.shape} "
            f"{tensor.datatype} ({expected:,} expected)"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(tensor.shape).astype(np.float32)
