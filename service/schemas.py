"""Request and response models: the API reference on the OpenAPI page (/docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store import (
    Artifact,
    Fusion,
    Precision,
    PrecisionAgreement,
    ProbeProvenance,
    Profile,
    Recipe,
    SimilarityCalibration,
)
from service.version_state import VersionState


class LabelScore(BaseModel):
    label: str = Field(examples=["moving right"])
    index: int = Field(description="Class index in the model's label set.", examples=[1])
    score: float = Field(description="Softmax probability averaged over views.", examples=[0.97])


class ClipPrediction(BaseModel):
    clip: int = Field(description="Clip number, in time order.")
    start_s: float = Field(description="Clip start in the video, seconds.")
    end_s: float = Field(description="Clip end in the video, seconds.")
    top_k: list[LabelScore]


class Segment(BaseModel):
    """One stretch of the video with one action: windows that agree on their (smoothed) top-1
    action, joined across short gaps and shot changes (`service.segments`)."""

    label: str = Field(examples=["moving right"])
    index: int = Field(description="Class index in the model's label set.", examples=[1])
    start_s: float = Field(description="Start of its first window, seconds.", examples=[12.0])
    end_s: float = Field(description="End of its last window, seconds.", examples=[18.67])
    score: float = Field(
        description="The label's probability averaged over the segment's own windows.",
        examples=[0.9],
    )
    windows: int = Field(description="Windows of its label in it.", examples=[4])


class Shot(BaseModel):
    """A stretch of one camera between two shot boundaries (`shots=true`), with the actions
    of the windows it holds."""

    shot: int = Field(description="Shot number, in time order.", examples=[3])
    start_s: float = Field(description="Its first frame, seconds.", examples=[12.0])
    end_s: float = Field(description="The next shot's first frame (or the end), seconds.")
    confidence: float | None = Field(
        description="How sure the boundary that opened it is (0..1); None for the first shot.",
        examples=[0.95],
    )
    kind: str | None = Field(
        description="The opening boundary: 'cut' or 'gradual' (a cross-fade); None first.",
        examples=["cut"],
    )
    top_k: list[LabelScore] = Field(
        description="Window probabilities averaged over the shot (each window by its overlap)."
    )


class Embedding(BaseModel):
    """A video's embedding: the model's pooled float32 features averaged over the views it
    classified (not normalised). One shape wherever a video's embedding is returned:
    /classify with `embedding=true`, /embed, a job's results."""

    dim: int = Field(description="Embedding width D (= len(values)).", examples=[4])
    values: list[float] = Field(
        description="D float32 values, exactly as the runtime computed them, averaged over "
        "the views; not normalised.",
        examples=[[0.0, 1.25, 0.5, 0.031]],
    )


class VideoMetadata(BaseModel):
    container: str = Field(examples=["mov,mp4,m4a,3gp,3g2,mj2"])
    codec: str = Field(examples=["h264"])
    width: int = Field(examples=[1280])
    height: int = Field(examples=[720])
    fps: float | None = Field(description="Average frame rate.", examples=[30.0])
    duration_s: float | None = Field(examples=[10.0])
    frames_decoded: int = Field(description="Frames the sampler decoded.", examples=[16])
    clips: int = Field(description="Clips sampled.", examples=[1])
    views: int = Field(description="Views classified (clips × crops).", examples=[1])
    keyframe_snap_s: float | None = Field(
        None,
        description="With profile=fast: how far (s) the one clip was moved from the centre of "
        "the video to start on a keyframe, so that decoding it decodes about its own frames "
        "(negative: earlier); null when it was not moved. Never for profile=accurate.",
        examples=[None],
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Damage the decoder worked around, e.g. a file truncated after its header "
        "was written (the clips then cover only the frames present).",
        examples=[["truncated: the header says 10.0 s, the packets end at 4.2 s"]],
    )


class StreamTimings(BaseModel):
    """Milliseconds one stream of a two-stream model spent (rgb or flow)."""

    queue_ms: float = Field(description="Waiting for batch-mates and this stream's runtime.")
    inference_ms: float = Field(description="This stream's runtime time for this request.")
    flow_ms: float | None = Field(
        None, description="Flow stream: TV-L1 optical flow in the worker (part of decode_ms)."
    )


class Timings(BaseModel):
    """Milliseconds spent in each stage of this request."""

    upload_ms: float = Field(description="Receiving the upload.")
    decode_wait_ms: float = Field(
        0.0, description="Waiting for a free decode worker (the decode backlog)."
    )
    decode_ms: float = Field(
        description="Indexing, sampling and decoding in a worker process (and optical flow), "
        "then assembling the views."
    )
    queue_ms: float = Field(
        description="Waiting for batch-mates and a free runtime (two-stream: the stream the "
        "request waited for, the one that finished last)."
    )
    inference_ms: float = Field(
        description="Runtime time of the batches this request joined (two-stream: the stream "
        "that finished last; the streams run at once, so queue_ms + inference_ms is the wall "
        "time of the stage; each stream's own are in `streams`)."
    )
    total_ms: float = Field(description="From the first byte to the response.")
    streams: dict[str, StreamTimings] | None = Field(
        None, description="Two-stream models: each stream's share, by modality (rgb, flow)."
    )


class AnsweredBy(BaseModel):
    """What every video route's answer starts with: the request, and the model version and
    profile that answered it."""

    request_id: str
    model: str
    version: int
    profile: Profile


class ClassifyResponse(AnsweredBy):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "4f6c0e8d2b7a4c1e",
                    "model": "demo-actions",
                    "version": 1,
                    "profile": "accurate",
                    "top_k": [
                        {"label": "moving right", "index": 1, "score": 0.97},
                        {"label": "growing", "index": 6, "score": 0.01},
                    ],
                    "embedding": None,
                    "clips": None,
                    "video": {
                        "container": "mov,mp4,m4a,3gp,3g2,mj2",
                        "codec": "h264",
                        "width": 320,
                        "height": 240,
                        "fps": 24.0,
                        "duration_s": 2.0,
                        "frames_decoded": 40,
                        "clips": 2,
                        "views": 2,
                    },
                    "timings": {
                        "upload_ms": 1.2,
                        "decode_wait_ms": 0.1,
                        "decode_ms": 38.0,
                        "queue_ms": 4.1,
                        "inference_ms": 21.5,
                        "total_ms": 66.0,
                    },
                }
            ]
        }
    )

    top_k: list[LabelScore] = Field(description="Best classes first.")
    embedding: Embedding | None = Field(None, description="With `embedding=true`.")
    clips: list[ClipPrediction] | None = Field(None, description="With `per_clip=true`.")
    segments: list[Segment] | None = Field(None, description="With `segments=true`.")
    shots: list[Shot] | None = Field(None, description="With `shots=true`.")
    video: VideoMetadata
    timings: Timings


#: The examples of /embed and /similarity: a demo video and where its time went.
VIDEO_EXAMPLE = {
    "container": "mov,mp4,m4a,3gp,3g2,mj2",
    "codec": "h264",
    "width": 320,
    "height": 240,
    "fps": 24.0,
    "duration_s": 2.0,
    "frames_decoded": 16,
    "clips": 2,
    "views": 2,
}
TIMINGS_EXAMPLE = {
    "upload_ms": 1.2,
    "decode_ms": 38.0,
    "queue_ms": 4.1,
    "inference_ms": 5.5,
    "total_ms": 50.0,
}


class WindowEmbedding(BaseModel):
    window: int = Field(description="Window number, in time order.")
    start_s: float = Field(description="Window start in the video, seconds.")
    end_s: float = Field(description="Window end in the video, seconds.")
    values: list[float] = Field(description="The window's embedding (its crops averaged).")


class EmbedResponse(AnsweredBy):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "4f6c0e8d2b7a4c1e",
                    "model": "demo-actions",
                    "version": 1,
                    "profile": "accurate",
                    "embedding": {"dim": 4, "values": [0.0, 1.25, 0.5, 0.031]},
                    "windows": None,
                    "video": VIDEO_EXAMPLE,
                    "timings": TIMINGS_EXAMPLE,
                }
            ]
        }
    )

    embedding: Embedding = Field(
        description="The video's embedding over the profile's views (`per_window=true` does "
        "not change it); the shape of /classify's `embedding`."
    )
    windows: list[WindowEmbedding] | None = Field(None, description="With `per_window=true`.")
    video: VideoMetadata
    timings: Timings


class SimilarityResponse(AnsweredBy):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "4f6c0e8d2b7a4c1e",
                    "model": "demo-actions",
                    "version": 1,
                    "profile": "accurate",
                    "similarity": 0.97,
                    "threshold": 0.8,
                    "threshold_source": "default",
                    "same_action": True,
                    "a": VIDEO_EXAMPLE,
                    "b": VIDEO_EXAMPLE | {"container": "matroska,webm", "codec": "vp9"},
                    "timings": TIMINGS_EXAMPLE | {"upload_ms": 2.5, "total_ms": 55.0},
                }
            ]
        }
    )

    similarity: float = Field(
        description="Cosine similarity of the two videos' mean embeddings, -1 to 1.",
        examples=[0.97],
    )
    threshold: float = Field(description="`same_action` is similarity ≥ threshold.")
    threshold_source: Literal["request", "calibrated", "default"] = Field(
        description="request: the `threshold` parameter; calibrated: the model version's, fitted "
        "by `actserve probe` on labelled videos; default: the service's uncalibrated 0.8."
    )
    same_action: bool
    a: VideoMetadata = Field(description="The video of field `a`.")
    b: VideoMetadata = Field(description="The video of field `b`.")
    timings: Timings = Field(
        description="Upload of the whole body; decode, queue and inference of the slower of the "
        "two videos (they run side by side); total end to end."
    )


class ErrorResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: str = Field(description="A stable error code.", examples=["limit_exceeded"])
    message: str = Field(
        examples=["video lasts 900.0 s; max_duration_s is 600.0 (ACTSERVE_MAX_DURATION_S)"]
    )
    request_id: str | None = None


class ModelVersionPublic(BaseModel):
    version: int
    aliases: list[str] = Field(description="Aliases pointing at this version.")
    state: VersionState = Field(
        description="loaded (serving), draining (finishing its requests), closed, available "
        "(in the store, not loaded) or broken (routed, but it failed to load: see load_error)",
        examples=["loaded"],
    )
    runtime: str | None = Field(None, examples=["onnxruntime 1.31.1 CPU fp32 (model.onnx)"])
    load_seconds: float | None = None
    load_error: str | None = Field(
        None, description="Why a broken version failed to load; requests for it get 503."
    )
    backbone: str
    trained: bool
    description: str
    created_at: datetime
    default_profile: Profile
    recipe: Recipe
    num_classes: int
    label_set: str | None
    labels_count: int
    embedding_dim: int
    precision: Precision = Field(
        description="The precision the version was exported and checked at: it runs at this "
        "precision or higher (a bf16 version runs in fp32 on a CPU without bf16), never lower."
    )
    precision_agreement: PrecisionAgreement | None = Field(
        None,
        description="Below fp32: its recorded agreement with fp32 (top-1, max |Δp|) per weights.",
    )
    artifacts: list[Artifact] = Field(
        description="Files with their parity reports (a two-stream version's rgb.* and flow.*)."
    )
    parity: Literal["checked", "declared, not checked"] = Field(
        "checked",
        description="checked: every artifact was compared with its source model at export. "
        "declared, not checked: an imported artifact; its recipe and outputs are its "
        "publisher's word (shapes and finite outputs were validated, the numbers were not).",
    )
    fusion: Fusion | None = Field(
        None, description="Two-stream versions: the weights of the rgb and flow softmaxes."
    )
    similarity: SimilarityCalibration | None = Field(
        None, description="The calibrated threshold of POST /similarity (None: the default)."
    )
    probe: ProbeProvenance | None = Field(
        None, description="For a model made by `actserve probe`: base version, data, accuracy."
    )


class BrokenVersionPublic(BaseModel):
    """A version whose manifest the store cannot read or trust: listed, never served."""

    version: int
    aliases: list[str]
    state: str = Field("broken", description="Always 'broken'.")
    error: str = Field(description="What is wrong with it.")


class ModelPublic(BaseModel):
    name: str
    default: bool = Field(description="Served when a request names no model.")
    aliases: dict[str, int]
    routed_version: int | None = Field(
        None, description="The version a request naming only the model gets."
    )
    versions: list[ModelVersionPublic | BrokenVersionPublic]
    problems: list[str] = Field(
        default_factory=list, description="What the store could not read for this model."
    )


class ModelsPublic(BaseModel):
    default_model: str | None
    models: list[ModelPublic]


class ReadyPublic(BaseModel):
    ready: bool
    default_model: str | None
    loaded: list[str] = Field(examples=[["demo-actions@1"]])
    broken: dict[str, str] = Field(
        default_factory=dict,
        description="Versions (name@version) or models that failed to load, with why; they "
        "are refused, the others serve.",
        examples=[{"demo-actions@2": "IntegrityError: model.onnx: sha256 differs"}],
    )


class PromoteRequest(BaseModel):
    version: int = Field(ge=1, description="The version to point the alias at.", examples=[2])
    alias: str = Field(
        "stable",
        description="The alias to move; `stable` is what requests naming only the model get.",
        examples=["stable", "canary"],
    )


class AdminResult(BaseModel):
    message: str = Field(description="What was done.", examples=["r3d_18@stable → version 2"])
    loaded: list[str] = Field(
        description="Every version loaded after the call, as name@version.",
        examples=[["r3d_18@2", "demo-actions@1"]],
    )
