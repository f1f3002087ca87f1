"""The Open Inference Protocol endpoints Triton's clients call beyond the core protocol: a
model's configuration, its inference statistics, and the repository index.

    GET  /v2/models/{name}[/versions/{version}]/config   Triton's ModelConfig, as JSON
    GET  /v2/models[/{name}[/versions/{version}]]/stats  Triton's ModelStatistics
    POST /v2/repository/index                            every version in the store, its state

The statistics are read from the service's Prometheus registry (the same counters /metrics
shows), so the two never disagree: `inference_count` counts views (the protocol's batch
items), `execution_count` batches, `success` the requests answered 200 with their total
time, `queue` and `compute_infer` the time in the batcher's queue and in the runtime.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from service.deps import EngineDep
from service.loaded_models import LoadedModel, VersionState
from service.routes.v2 import ERRORS, _network, _resolve
from service.schemas import ErrorResponse

router = APIRouter(prefix="/v2", tags=["v2"])

ModelName = Annotated[str, Path(description="A model in the store.", examples=["r3d_18"])]
ModelVersion = Annotated[
    str, Path(description="A loaded version number, or an alias.", examples=["2", "stable"])
]

#: Triton's names of the store's tensor types.
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64"}


# ------------------------------------------------------------------------------- config


@router.get("/models/{name}/config", responses=ERRORS)
def read_model_config(name: ModelName, engine: EngineDep) -> dict[str, Any]:
    """The model's configuration in Triton's `ModelConfig` JSON form (what
    `tritonclient.get_model_config` returns): platform, batch bound, tensors without their
    batch dimension."""
    return _config(engine, _resolve(engine, name, None))


@router.get("/models/{name}/versions/{version}/config", responses=ERRORS)
def read_version_config(name: ModelName, version: ModelVersion, engine: EngineDep) -> dict:
    """One version's configuration, as `/v2/models/{name}/config`."""
    return _config(engine, _resolve(engine, name, version))


def _config(engine: EngineDep, loaded: LoadedModel) -> dict[str, Any]:
    artifact = _network(loaded)

    def tensors(infos: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": t.name,
                "data_type": TRITON_TYPES.get(t.dtype, f"TYPE_{t.dtype.upper()}"),
                "dims": [d if isinstance(d, int) else -1 for d in t.shape[1:]],
            }
            for t in infos
        ]

    platform = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}
    return {
        "name": loaded.manifest.name,
        "version": str(loaded.manifest.version),
        "platform": platform.get(artifact.format, artifact.format),
        "backend": loaded.runtime_description,
        "max_batch_size": engine.settings.batching.max_batch_views,
        "input": tensors(artifact.inputs),
        "output": tensors(artifact.outputs),
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(engine.settings.batching.max_delay_ms * 1000)
        },
    }


# ------------------------------------------------------------------------------- stats


@router.get("/models/stats")
def read_all_statistics(engine: EngineDep) -> dict[str, Any]:
    """Inference statistics of every loaded version."""
    return {"model_stats": [_statistics(engine, m) for m in engine.models.loaded()]}


@router.get("/models/{name}/stats", responses=ERRORS)
def read_model_statistics(name: ModelName, engine: EngineDep) -> dict[str, Any]:
    """Inference statistics of the model's loaded versions."""
    _resolve(engine, name, None)  # 404 for a model not served
    loaded = [m for m in engine.models.loaded() if m.manifest.name == name]
    return {"model_stats": [_statistics(engine, m) for m in loaded]}


@router.get("/models/{name}/versions/{version}/stats", responses=ERRORS)
def read_version_statistics(name: ModelName, version: ModelVersion, engine: EngineDep) -> dict:
    """One version's inference statistics."""
    return {"model_stats": [_statistics(engine, _resolve(engine, name, version))]}


def _statistics(engine: EngineDep, loaded: LoadedModel) -> dict[str, Any]:
    registry = engine.metrics.registry
    model, version = loaded.labels

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, {"model": model, "version": version, **labels})
        return found or 0.0

    def duration(histogram: str) -> dict[str, int]:
        return {
            "count": int(value(f"{histogram}_count")),
            "ns": int(value(f"{histogram}_sum") * 1e9),
        }

    succeeded = [
        s
        for metric in registry.collect()
        if metric.name == "actserve_requests"
        for s in metric.samples
        if s.name == "actserve_requests_total"
        and (s.labels["model"], s.labels["version"]) == (model, version)
    ]
    ok = sum(s.value for s in succeeded if s.labels["status"] == "200")
    failed = sum(s.value for s in succeeded if s.labels["status"] != "200")
    return {
        "name": model,
        "version": version,
        "inference_count": int(value("actserve_inference_items_total")),
        "execution_count": int(value("actserve_inference_executions_total")),
        "inference_stats": {
            "success": {
                "count": int(ok),
                "ns": duration("actserve_request_duration_seconds")["ns"],
            },
            "fail": {"count": int(failed), "ns": 0},
            "queue": duration("actserve_queue_duration_seconds"),
            "compute_infer": duration("actserve_inference_duration_seconds"),
        },
    }


# ------------------------------------------------------------------------------- index


@router.post("/repository/index", responses={500: {"model": ErrorResponse}})
def read_repository_index(engine: EngineDep) -> list[dict[str, str]]:
    """Every version in the store: READY when it is loaded here, UNAVAILABLE with the reason
    when it failed to load, and no state when it is only in the store (Triton's shape)."""
    snapshot = engine.models.snapshot()
    index = []
    store = engine.models.store
    for name in store.list_models():
        for version in store.list_versions(name):
            status = snapshot.status(name, version)
            entry = {"name": name, "version": str(version)}
            if status.state == VersionState.LOADED:
                entry["state"] = "READY"
            elif status.state == VersionState.BROKEN:
                entry |= {"state": "UNAVAILABLE", "reason": status.error or ""}
            elif status.state == VersionState.DRAINING:
                entry |= {"state": "UNLOADING"}
            index.append(entry)
    return index
