"""Service settings: one tree, read from `ACTSERVE_*` environment variables.

    Settings
    ├── store, default_model, preload, host, port, request_timeout_s, drain_timeout_s,
    │   max_top_k, upload_dir, admin_token
    ├── video: VideoLimits          what an upload may be (service/video/limits.py)
    ├── decode: DecodeSettings      the decode workers and their backlog (service/video/pool.py)
    ├── admission: AdmissionSettings  bounds at the door (here; service/engine.py)
    ├── batching: BatchingSettings  view batching (service/batching.py)
    ├── http: HttpSettings          slow and oversized clients, the drain (here; service/server.py)
    ├── search: SearchSettings      the window index (service/search/settings.py)
    ├── jobs: JobSettings           durable jobs: directory, database, leases (service/jobs)
    ├── runtime: RuntimeOptions     which artifact runs where (service/runtimes/base.py)
    └── streams: StreamSettings     live streams (service/streams/settings.py)

Each group is defined beside the code it configures and handed to it whole, but every field
has one environment name, flat: `ACTSERVE_<FIELD>` (`ACTSERVE_MAX_PIXELS` for
`video.max_pixels`), unless the group's `flat_names` gives another (`ACTSERVE_DECODE_WORKERS`
for `decode.workers`). Keyword arguments take the same flat names (lower case), or the groups
as objects or dicts. `Settings.reference()` lists every setting for the documentation.

`ACTSERVE_RUNTIME` is `runtime.kind` (the runtime's name; `runtime` is also the group's name:
as a keyword argument a string sets `kind`, an object or dict the group).

Built once (`create_app(settings)`, `Engine(settings)`) and handed down; nothing reads the
environment at import time. This module imports no server: `actserve batch` reads it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from service.batching import BatchingSettings
from service.jobs.settings import JobSettings
from service.logs import LogFormat
from service.runtimes.base import RuntimeOptions
from service.search.settings import SearchSettings
from service.streams.settings import StreamSettings
from service.tracing import TraceExporter
from service.video.limits import VideoLimits, split_commas
from service.video.pool import DecodeSettings

BUNDLED_STORE = Path(__file__).resolve().parent / "bundled_store"
ENV_PREFIX = "ACTSERVE_"


class HttpSettings(BaseModel):
    """How long and how much the server waits for and takes from one client; the `http`
    group, applied by service/server.py."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    header_timeout_s: float = Field(
        10.0, gt=0, description="Request line and headers must arrive within this → 408."
    )
    body_idle_timeout_s: float = Field(
        20.0, gt=0, description="Longest pause between two pieces of an upload → 408."
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Request line and headers, in bytes → 431."
    )
    keep_alive_s: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this."
    )
    limit_concurrency: int | None = Field(
        512, ge=1, description="Open connections (or requests) above which a request gets 503."
    )
    drain_grace_s: float = Field(
        0.0, ge=0, description="On shutdown, /readyz says 503 this long before the listener closes."
    )


class AdmissionSettings(BaseModel):
    """Bounds at the door; the `admission` group of the service's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The `ACTSERVE_*` names (lower case, no prefix) that differ from the field's name.
    flat_names: ClassVar[dict[str, str]] = {
        "max_uploads": "max_concurrent_uploads",
        "client_header": "client_id_header",
    }

    max_uploads: int = Field(
        32, ge=1, description="Uploads received at once; more are refused (429) before reading."
    )
    client_header: str | None = Field(
        None,
        description="Request header that names the client for fair decoding (e.g. "
        "X-Forwarded-For behind a trusted proxy, or an API-key header); default: the peer "
        "address.",
    )


@dataclass(frozen=True)
class SettingReference:
    """One setting as the configuration reference lists it."""

    env: str  # ACTSERVE_MAX_PIXELS
    type: str  # int, float, str | None, ...
    default: Any  # the value when unset (None for none)
    description: str
    group: str | None  # the Settings field it sits in (video, decode, ...); None: top level
    field: str  # its name in the group (or at the top level)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    #: The nested groups, by field name.
    groups: ClassVar[dict[str, type[BaseModel]]] = {
        "video": VideoLimits,
        "decode": DecodeSettings,
        "admission": AdmissionSettings,
        "batching": BatchingSettings,
        "runtime": RuntimeOptions,
        "http": HttpSettings,
        "search": SearchSettings,
        "jobs": JobSettings,
        "streams": StreamSettings,
    }

    # Store and models.
    store: Path = Field(BUNDLED_STORE, description="Model store directory.")
    default_model: str | None = Field(
        None, description="Model served when a request names none (default: the store's)."
    )
    preload: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="More models to serve at start, comma-separated; '*' = all in the store.",
    )

    # Network.
    host: str = Field("127.0.0.1", description="Address `actserve serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `actserve serve` listens on.")
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Also serve the Open Inference Protocol over gRPC (KServe v2) on this port "
        "of `host` (0: any free port); off when unset. Needs the grpc extra.",
    )

    # Requests.
    request_timeout_s: float = Field(120.0, gt=0, description="Deadline of a request → 504.")
    drain_timeout_s: float = Field(30.0, ge=0, description="Wait for in-flight requests.")
    max_top_k: int = Field(100, ge=1, description="Largest top_k a request may ask for.")
    upload_dir: Path | None = Field(None, description="Where uploads are spooled (system tmp).")

    # Logs.
    log_format: LogFormat = Field(
        LogFormat.text,
        description="Log lines as readable text, or one JSON object a line ('json'); every "
        "line carries its request id, and each request gets one line of its own.",
    )

    trace_exporter: TraceExporter = Field(
        TraceExporter.none,
        description="'otlp': send OpenTelemetry spans (a request and its upload, decode wait, "
        "decode, queue and inference) to the collector the OTEL_EXPORTER_OTLP_* variables name "
        "(needs the otel extra); 'none': use the tracer provider the process has, if any.",
    )

    # Access.
    api_keys: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="API keys of the inference routes as NAME:SHA256HEX entries (the key's "
        "SHA-256 digest), comma-separated; with these or api_keys_file set, /classify, /embed, "
        "/similarity and /v2 infer need a key (off when both are empty).",
    )
    api_keys_file: Path | None = Field(
        None, description="A file of NAME:SHA256HEX lines ('#' comments), as api_keys."
    )
    cors_origins: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="Origins browser clients may call from (CORS), comma-separated, e.g. "
        "https://app.example.com; '*' for any; empty: no CORS headers (off).",
    )

    # Admin.
    admin_token: SecretStr | None = Field(
        None, description="Bearer token enabling the /admin endpoints (disabled when unset)."
    )

    # The groups (set through their fields' flat names; no environment name of their own).
    video: VideoLimits = Field(default_factory=VideoLimits, description="What an upload may be.")
    decode: DecodeSettings = Field(
        default_factory=DecodeSettings, description="The decode workers and their backlog."
    )
    admission: AdmissionSettings = Field(
        default_factory=AdmissionSettings, description="Bounds at the door."
    )
    batching: BatchingSettings = Field(
        default_factory=BatchingSettings, description="View batching."
    )
    runtime: RuntimeOptions = Field(
        default_factory=RuntimeOptions, description="Which artifact runs where."
    )
    http: HttpSettings = Field(
        default_factory=HttpSettings, description="Slow and oversized clients, the drain."
    )
    search: SearchSettings = Field(
        default_factory=SearchSettings, description="The window index of /index and /search."
    )
    jobs: JobSettings = Field(
        default_factory=JobSettings, description="Durable jobs: directory, database, leases."
    )
    streams: StreamSettings = Field(
        default_factory=StreamSettings, description="Live streams (service/streams)."
    )

    @classmethod
    def flat_names(cls) -> dict[str, tuple[str | None, str]]:
        """Every setting name (lower case, no prefix) → (group or None, field)."""
        names: dict[str, tuple[str | None, str]] = {
            name: (None, name) for name in cls.model_fields if name not in cls.groups
        }
        for group, model in cls.groups.items():
            renamed: dict[str, str] = getattr(model, "flat_names", {})
            for field in model.model_fields:
                names[renamed.get(field, field)] = (group, field)
        return names

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable the settings read."""
        return {ENV_PREFIX + name.upper() for name in cls.flat_names()}

    @classmethod
    def reference(cls) -> list[SettingReference]:
        """Every setting, in declaration order (top level first, then each group): its
        environment name, type, default and description, for the configuration reference."""
        rows = []
        for name, (group, field) in cls.flat_names().items():
            model: type[BaseModel] = cls.groups[group] if group else cls
            info = model.model_fields[field]
            default = info.get_default(call_default_factory=True)
            rows.append(
                SettingReference(
                    env=ENV_PREFIX + name.upper(),
                    type=_type_name(info),
                    default=default.get_secret_value()
                    if isinstance(default, SecretStr)
                    else default,
                    description=info.description or "",
                    group=group,
                    field=field,
                )
            )
        return rows

    def __init__(self, **values: Any) -> None:
        super().__init__(**self.nest(values))

    @classmethod
    def nest(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Move flat names (`max_pixels`) into their group; a value given in the group itself
        wins."""
        names = cls.flat_names()
        out: dict[str, Any] = {}
        moved: list[tuple[str, str, Any]] = []
        for key, value in values.items():
            if key in cls.groups and not isinstance(value, str):
                out[key] = value  # the group itself (`runtime` is also a flat name)
                continue
            group, field = names.get(key, (None, key))
            if group is not None:
                moved.append((group, field, value))
            else:
                out[key] = value
        for group, field, value in moved:
            given = out.get(group)
            merged = given.model_dump() if isinstance(given, BaseModel) else dict(given or {})
            merged.setdefault(field, value)
            out[group] = merged
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _TopLevelEnvSource(settings_cls), _FlatEnvSource(settings_cls))


def _type_name(info: FieldInfo) -> str:
    annotation = info.annotation
    text = getattr(annotation, "__name__", None) if not hasattr(annotation, "__args__") else None
    text = text or str(annotation)
    for module in ("typing.", "pathlib.", "pydantic.types."):
        text = text.replace(module, "")
    return text


class _TopLevelEnvSource(EnvSettingsSource):
    """The top-level fields' `ACTSERVE_<FIELD>` variables; a group has no variable of its
    own (its fields have: `_FlatEnvSource`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in Settings.groups:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class _FlatEnvSource(PydanticBaseSettingsSource):
    """The groups' flat `ACTSERVE_<NAME>` variables, put in their groups."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the environment at once

    def __call__(self) -> dict[str, Any]:
        names = Settings.flat_names()
        found = {}
        for key, value in os.environ.items():
            name = key.upper().removeprefix(ENV_PREFIX).lower()
            if key.upper().startswith(ENV_PREFIX) and names.get(name, (None,))[0] is not None:
                found[name] = value
        return Settings.nest(found)
