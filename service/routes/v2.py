"""The Open Inference Protocol (KServe v2) REST endpoints: the server and model health and
metadata, and inference on the model's preprocessed input tensor.

    POST /v2/models/{name}[/versions/{version}]/infer
    clips (N, C, T, H, W) FP32, JSON or binary -> logits (N, K), embedding (N, D)

The tensors are what the store's artifacts take and give, so a platform that already speaks
the protocol (KServe, Triton's clients, Seldon) can call actserve without the video intake;
a request passes the same door as /classify's (`engine.admit`, the drain, the metrics) and its
views join the same batcher (`engine.run_tensors`); errors come from the same table, in the
protocol's `{"error": message}` shape (plus actserve's `code` and `request_id`). A model's
version segment is a version number or an alias (`stable`); without it the model's route
(the `stable` alias, else the newest version) answers.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from model_store.manifest import Artifact, TensorInfo
from service.auth import ApiKeyDep
from service.deps import ClientDep, EngineDep, OutcomeDep
from service.errors import (
    BadRequest,
    DeadlineExceeded,
    ModelNotLoaded,
    NotReady,
    Overloaded,
    RequestTimeout,
    UnsupportedMediaType,
    UploadTooLarge,
    VersionBroken,
    openapi_errors,
)
from service.loaded_models import LoadedModel
from service.oip import (
    EXTENSIONS,
    INFERENCE_HEADER,
    PROTOCOL_TYPES,
    InferenceError,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ReadinessV2,
    ServerMetadata,
    TensorMetadata,
    binary_outputs,
    encode_response,
    parse_request,
)
from service.upload import read_body, unless_disconnected

router = APIRouter(prefix="/v2", tags=["v2"])

ModelName = Annotated[str, Path(description="A model in the store.", examples=["r3d_18"])]
ModelVersion = Annotated[
    str, Path(description="A loaded version number, or an alias.", examples=["2", "stable"])
]
ERRORS = openapi_errors(
    InferenceError,
    BadRequest,
    ModelNotLoaded,
    RequestTimeout,
    UploadTooLarge,
    UnsupportedMediaType,
    Overloaded,
    NotReady,
    DeadlineExceeded,
)
NOT_READY = {400: {"model": ReadinessV2, "description": "Not ready (the protocol's 4xx)."}}


# ------------------------------------------------------------------------------- server


@router.get("", response_model=ServerMetadata)
def read_server_metadata(request: Request) -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name="actserve", version=request.app.version, extensions=EXTENSIONS)


@router.get("/health/live")
def check_live() -> dict[str, bool]:
    """The process answers (200)."""
    return {"live": True}


@router.get("/health/ready", response_model=ReadinessV2, responses=NOT_READY)
def check_ready(engine: EngineDep) -> JSONResponse:
    """200 when the default model is loaded and warmed up and the server is not draining;
    400 otherwise (the protocol's "4xx means false"; /readyz answers 503)."""
    body = ReadinessV2(ready=engine.ready).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=200 if engine.ready else 400)


# -------------------------------------------------------------------------------- models


@router.get("/models/{name}", response_model=ModelMetadata, responses=ERRORS)
def read_model_metadata(name: ModelName, engine: EngineDep) -> ModelMetadata:
    """The model's loaded versions and the tensors of the version its route serves."""
    return _metadata(engine, _resolve(engine, name, None))


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS)
def read_version_metadata(
    name: ModelName, version: ModelVersion, engine: EngineDep
) -> ModelMetadata:
    """The tensors of one version (a number or an alias)."""
    return _metadata(engine, _resolve(engine, name, version))


@router.get("/models/{name}/ready", response_model=ReadinessV2, responses=NOT_READY | ERRORS)
def check_model_ready(name: ModelName, engine: EngineDep) -> JSONResponse:
    """200 when the model's routed version takes requests; 400 when it does not (yet)."""
    return _readiness(engine, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=ReadinessV2,
    responses=NOT_READY | ERRORS,
)
def check_version_ready(name: ModelName, version: ModelVersion, engine: EngineDep) -> JSONResponse:
    """200 when the version (a number or an alias) takes requests; 400 when it does not."""
    return _readiness(engine, name, version)


def _inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its nested models written in place: an `openapi_extra`
    body cannot add them to the document's components."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "JSON, or with the binary tensor extension the JSON header "
        f"({INFERENCE_HEADER} bytes) followed by the raw little-endian tensors.",
        "content": {
            "application/json": {"schema": _inline_schema(InferenceRequest)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    responses=ERRORS,
    openapi_extra=INFER_BODY,
    dependencies=[ApiKeyDep],
)
async def infer(
    request: Request, name: ModelName, engine: EngineDep, outcome: OutcomeDep, client: ClientDep
) -> Response:
    """Run the model's routed version on preprocessed clips (N, C, T, H, W) FP32; returns
    `logits` (N, K) and `embedding` (N, D)."""
    return await _infer(request, engine, outcome.served_by(_resolve(engine, name, None)), client)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    responses=ERRORS,
    openapi_extra=INFER_BODY,
    dependencies=[ApiKeyDep],
)
async def infer_version(
    request: Request,
    name: ModelName,
    version: ModelVersion,
    engine: EngineDep,
    outcome: OutcomeDep,
    client: ClientDep,
) -> Response:
    """Run one version (a number or an alias) on preprocessed clips."""
    loaded = outcome.served_by(_resolve(engine, name, version))
    return await _infer(request, engine, loaded, client)


# ----------------------------------------------------------------------------- helpers


def _resolve(engine: EngineDep, name: str, version: str | None) -> LoadedModel:
    if version is not None and version.isdigit():
        return engine.resolve(name, int(version), None)
    return engine.resolve(name, None, version)


def _readiness(engine: EngineDep, name: str, version: str | None) -> JSONResponse:
    try:
        _resolve(engine, name, version)  # only a version that takes requests resolves
        ready = not engine.draining
    except (ModelNotLoaded, NotReady, VersionBroken):
        if not _exists(engine, name, version):
            raise  # no such model, version or alias: the 404 metadata answers, not "not ready"
        ready = False
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 400)


def _exists(engine: EngineDep, name: str, version: str | None) -> bool:
    """Whether the store has the model (and the version number or alias)."""
    store = engine.models.store
    if name not in store.list_models():
        return False
    if version is None:
        return True
    if version.isdigit():
        return int(version) in store.list_versions(name)
    return version in store.aliases(name)


def _network(loaded: LoadedModel) -> Artifact:
    """The version's one network (every artifact of a version has the same tensors); a
    two-stream version has two, with inputs of different shapes, which the protocol's one
    model cannot say."""
    if len(loaded.streams) != 1 or not loaded.manifest.artifacts:
        raise BadRequest(
            f"{loaded.key} is a two-stream version (rgb + flow); the Open Inference Protocol "
            "endpoints serve one-network versions: export each stream as a model of its own"
        )
    return loaded.manifest.artifacts[0]


def _tensors(infos: tuple[TensorInfo, ...]) -> list[TensorMetadata]:
    return [
        TensorMetadata(
            name=t.name,
            datatype=PROTOCOL_TYPES[t.dtype],
            shape=[d if isinstance(d, int) else -1 for d in t.shape],
        )
        for t in infos
    ]


def _metadata(engine: EngineDep, loaded: LoadedModel) -> ModelMetadata:
    name = loaded.manifest.name
    artifact = _network(loaded)
    versions = sorted(m.manifest.version for m in engine.models.loaded() if m.manifest.name == name)
    return ModelMetadata(
        name=name,
        versions=[str(v) for v in versions],
        platform=loaded.runtime_description,
        inputs=_tensors(artifact.inputs),
        outputs=_tensors(artifact.outputs),
    )


async def _infer(request: Request, engine: EngineDep, loaded: LoadedModel, client: str) -> Response:
    deadline = engine.deadline()
    with engine.admit(loaded, client, tensors=True) as ticket:  # the drain's 503
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise UnsupportedMediaType(
                f"Content-Encoding {encoding} is not supported; send it plain"
            )
        artifact = _network(loaded)
        body = await read_body(request, engine.settings, deadline=deadline)
        parsed = parse_request(body, request.headers.get(INFERENCE_HEADER))
        clips = _clips(parsed.inputs, artifact.inputs[0])
        ticket.received()
        wanted = binary_outputs(parsed.request, tuple(t.name for t in artifact.outputs))
        work = engine.run_tensors(loaded, clips, deadline=deadline, started=ticket.started)
        outputs = await unless_disconnected(request, work)
    model, model_version = loaded.labels
    answer = InferenceResponse(
        model_name=model, model_version=model_version, id=parsed.request.id, outputs=[]
    )
    arrays = {"logits": outputs.logits, "embedding": outputs.embedding}
    content, header_length = encode_response(answer, arrays, wanted)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={INFERENCE_HEADER: str(header_length)},
    )


def _clips(inputs: dict[str, np.ndarray], expected: TensorInfo) -> np.ndarray:
    """The one input the model takes, checked against the artifact: name, shape, finite."""
    if set(inputs) != {expected.name}:
        raise BadRequest(
            f"this model takes one input, {expected.name!r}; got {', '.join(inputs) or 'none'}"
        )
    clips = inputs[expected.name]
    want = list(expected.shape[1:])
    if clips.ndim != len(expected.shape) or list(clips.shape[1:]) != want or not len(clips):
        raise BadRequest(
            f"{expected.name} has shape {list(clips.shape)}; this model takes [N, "
            f"{', '.join(str(d) for d in want)}] with N ≥ 1 (the recipe's preprocessed views)"
        )
    if not np.isfinite(clips).all():
        raise BadRequest(f"{expected.name} holds NaN or infinite values")
    return np.ascontiguousarray(clips, dtype=np.float32)
