"""The Open Inference Protocol over gRPC (KServe v2's `inference.GRPCInferenceService`), on
`ACTSERVE_GRPC_PORT` beside the HTTP port (`pip install 'actserve[grpc]'`).

The same service behind another door: health, server and model metadata, and `ModelInfer`
on the model's preprocessed clips (FP32, as `raw_input_contents` or typed contents), whose
views join the batcher the HTTP routes feed. Errors are the service's own (`service.errors`)
with their message, mapped to gRPC status codes from the one HTTP status table; API keys,
when configured, are read from the `authorization` (Bearer) or `x-api-key` metadata.

The protocol's messages and service stub are the ones `tritonclient[grpc]` ships (generated
from KServe's `grpc_service.proto`), so Triton's own client speaks to it unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from model_store import StoreError
from service.auth import digest
from service.errors import BadRequest, Forbidden, ServiceError, Unauthorized, status_for
from service.logs import request_id_var

if TYPE_CHECKING:
    from service.engine import Engine

logger = logging.getLogger("actserve.grpc")
T = TypeVar("T")

#: HTTP status → gRPC status code, for the errors of `service.errors.STATUS`.
GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}
CONTENTS_FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents"}


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 gRPC over the service's engine (models, batchers, the door, metrics)."""

    def __init__(self, engine: Engine, api_keys: dict[str, str], version: str) -> None:
        self.engine = engine
        self.api_keys = api_keys
        self.version = version

    # ----------------------------------------------------------------- health, metadata

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.engine.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        from service.oip import EXTENSIONS

        return pb.ServerMetadataResponse(
            name="actserve", version=self.version, extensions=list(EXTENSIONS)
        )

    async def ModelReady(self, request: Any, context: Any) -> Any:
        from service.routes.v2 import _readiness

        async def ready() -> Any:
            answer = _readiness(self.engine, request.name, request.version or None)
            return pb.ModelReadyResponse(ready=answer.status_code == 200)

        return await self._answer(context, ready)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        from service.routes.v2 import _metadata, _resolve

        async def metadata() -> Any:
            loaded = _resolve(self.engine, request.name, request.version or None)
            found = _metadata(self.engine, loaded)
            tensors = [
                [pb.ModelMetadataResponse.TensorMetadata(**t.model_dump()) for t in side]
                for side in (found.inputs, found.outputs)
            ]
            return pb.ModelMetadataResponse(
                name=found.name,
                versions=found.versions,
                platform=found.platform,
                inputs=tensors[0],
                outputs=tensors[1],
            )

        return await self._answer(context, metadata)

    # ----------------------------------------------------------------------- inference

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        return await self._answer(context, lambda: self._infer(request, context))

    async def _infer(self, request: Any, context: Any) -> Any:
        from service.routes.v2 import _clips, _network, _resolve

        engine = self.engine
        self._check_key(context)
        loaded = _resolve(engine, request.model_name, request.model_version or None)
        endpoint = "/v2/models/{name}/infer (grpc)"
        try:
            deadline = _deadline(engine.settings.request_timeout_s, context)
            with engine.admit(loaded, context.peer() or "-", tensors=True) as ticket:
                artifact = _network(loaded)
                clips = _clips(_inputs(request), artifact.inputs[0])
                ticket.received()
                names = [t.name for t in artifact.outputs]
                wanted = [o.name for o in request.outputs] or names
                unknown = sorted(set(wanted) - set(names))
                if unknown:
                    raise BadRequest(f"unknown outputs {unknown}; this model gives {names}")
                outputs = await engine.run_tensors(
                    loaded, clips, deadline=deadline, started=ticket.started
                )
        except BaseException as error:
            engine.metrics.count_request(endpoint, loaded.labels, status_for(error))
            raise
        engine.metrics.count_request(endpoint, loaded.labels, 200)
        arrays = {"logits": outputs.logits, "embedding": outputs.embedding}
        model, version = loaded.labels
        answer = pb.ModelInferResponse(model_name=model, model_version=version, id=request.id)
        for name in wanted:
            array = np.ascontiguousarray(arrays[name], dtype=np.float32)
            answer.outputs.add(name=name, datatype="FP32", shape=list(array.shape))
            answer.raw_output_contents.append(array.tobytes())
        return answer

    def _check_key(self, context: Any) -> None:
        if not self.api_keys:
            return
        metadata = dict(context.invocation_metadata() or ())
        scheme, _, bearer = metadata.get("authorization", "").partition(" ")
        given = metadata.get("x-api-key") or (bearer if scheme.lower() == "bearer" else "")
        if not given:
            raise Unauthorized("this service needs an API key: send x-api-key metadata")
        name = self.api_keys.get(digest(given))
        if name is None:
            raise Forbidden("the API key is not accepted here")
        self.engine.metrics.api_key_requests.labels(name).inc()

    async def _answer(self, context: Any, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`; the service's errors end the RPC with their status and message."""
        request_id = dict(context.invocation_metadata() or ()).get("x-request-id", "-")
        token = request_id_var.set(request_id)
        try:
            return await call()
        except (ServiceError, StoreError) as error:
            status = status_for(error)
            if isinstance(error, ServiceError):
                self.engine.metrics.rejections.labels(error.code).inc()
            await context.abort(GRPC_CODES.get(status, grpc.StatusCode.INTERNAL), str(error))
            raise  # unreachable: abort raises
        finally:
            request_id_var.reset(token)


def _inputs(request: Any) -> dict[str, np.ndarray]:
    """The request's tensors, from `raw_input_contents` (what tritonclient sends) or the
    typed contents."""
    tensors: dict[str, np.ndarray] = {}
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    for i, tensor in enumerate(request.inputs):
        dtype = NUMPY_TYPES.get(tensor.datatype)
        if dtype is None:
            raise BadRequest(f"input {tensor.name!r} is {tensor.datatype}; send FP32")
        shape = [int(d) for d in tensor.shape]
        if raw:
            data = np.frombuffer(raw[i], dtype=dtype)
        else:
            field = CONTENTS_FIELD.get(tensor.datatype)
            data = np.asarray(getattr(tensor.contents, field) if field else [], dtype=dtype)
        if any(d < 0 for d in shape) or data.size != int(np.prod(shape)):
            raise BadRequest(f"input {tensor.name!r}: {data.size} values for shape {shape}")
        tensors[tensor.name] = data.reshape(shape)
    return tensors


def _deadline(timeout_s: float, context: Any) -> float:
    """The loop time by which the request must be answered: the service's timeout, or the
    client's gRPC deadline when sooner."""
    import asyncio

    remaining = context.time_remaining()
    if remaining is not None:
        timeout_s = min(timeout_s, remaining)
    return asyncio.get_running_loop().time() + timeout_s


async def start_grpc(
    engine: Engine, api_keys: dict[str, str], version: str, host: str, port: int
) -> Any:
    """Serve the protocol on host:port (0: a free port); returns the server, whose
    `actserve_port` is the port bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", engine.settings.video.max_upload_bytes),
            ("grpc.max_send_message_length", 64 * 2**20),
        ]
    )
    service = InferenceService(engine, api_keys, version)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise RuntimeError(f"cannot listen for gRPC on {host}:{port} (ACTSERVE_GRPC_PORT)")
    await server.start()
    server.actserve_port = bound
    logger.info("Open Inference Protocol over gRPC on %s:%d", host, bound)
    return server
