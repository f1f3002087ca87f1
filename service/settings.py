"""Service settings: every field can be set as an `ACTSERVE_<FIELD>` environment variable.

Built once by `create_app(settings)` and reached through the `SettingsDep` dependency; nothing
reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BUNDLED_STORE = Path(__file__).resolve().parent / "bundled_store"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACTSERVE_", extra="ignore")

    # Store and models.
    store: Path = Field(BUNDLED_STORE, description="Model store directory.")
    default_model: str | None = Field(
        None, description="Model served when a request names none (default: the store's)."
    )
    preload: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More models to serve at start, comma-separated; '*' = all in the store.",
    )

    # Network.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # Batching and deadlines.
    max_batch_views: int = Field(32, ge=1, le=1024, description="Views per inference batch.")
    max_delay_ms: float = Field(
        5.0, ge=0, le=10_000, description="Longest wait of the oldest view for batch-mates."
    )
    max_queue_views: int = Field(
        512, ge=1, description="Views allowed to wait per model version; more → 429."
    )
    request_timeout_s: float = Field(120.0, gt=0, description="Deadline of a request → 504.")
    drain_timeout_s: float = Field(30.0, ge=0, description="Wait for in-flight requests.")
    warmup_batch_sizes: Annotated[list[int | Literal["max"]], NoDecode] = Field(
        default_factory=lambda: [1],
        description="Batch sizes run once at load (comma-separated); 'max' = max_batch_views.",
    )
    max_top_k: int = Field(100, ge=1, description="Largest top_k a request may ask for.")

    # Uploads and video limits.
    max_upload_bytes: int = Field(200 * 1024**2, ge=1, description="Largest upload → 413.")
    max_duration_s: float = Field(600.0, gt=0, description="Longest video accepted → 422.")
    max_pixels: int = Field(
        3840 * 2160, ge=1, description="Largest frame (width × height) accepted → 422."
    )
    max_frames: int = Field(
        18_000, ge=1, description="Most frames a video may have (header, then packets) → 422."
    )
    max_windows: int = Field(
        64, ge=1, description="Most clips of a `per_clip` request over a long video."
    )
    upload_dir: Path | None = Field(None, description="Where uploads are spooled (system tmp).")

    # Decode workers.
    decode_workers: int = Field(2, ge=1, le=64, description="Decode worker processes.")
    decode_timeout_s: float = Field(30.0, gt=0, description="Per-video decode time limit.")
    decode_memory_mb: int = Field(
        2048, ge=256, description="Address-space limit of each decode worker."
    )

    # Runtime.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    runtime_threads: int = Field(0, ge=0, description="Intra-op threads (0 = all cores).")
    prefer_fp16: bool = Field(True, description="Use the fp16 ONNX artifact on CUDA.")
    prefer_torchscript: bool = Field(False, description="Serve TorchScript over ONNX.")

    # Admin.
    admin_token: SecretStr | None = Field(
        None, description="Bearer token enabling the /admin endpoints (disabled when unset)."
    )

    @field_validator("preload", "warmup_batch_sizes", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """Lists come from the environment as comma-separated text."""
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def resolved_warmup_sizes(self) -> tuple[int, ...]:
        sizes = {self.max_batch_views if s == "max" else s for s in self.warmup_batch_sizes}
        return tuple(sorted({min(s, self.max_batch_views) for s in sizes if s >= 1}))
