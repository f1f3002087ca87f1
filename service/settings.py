"""Service settings: one tree, read from `ACTSERVE_*` environment variables.

    Settings
    ├── store, default_model, preload, host, port, request_timeout_s, drain_timeout_s,
    │   max_top_k, upload_dir, admin_token
    ├── video: VideoLimits          what an upload may be (service/video/limits.py)
    ├── decode: DecodeSettings      the decode workers and their backlog (service/video/pool.py)
    ├── admission: AdmissionSettings  bounds at the door (service/admission.py)
    ├── batching: BatchingSettings  view batching (service/batching.py)
    ├── http: HttpSettings          slow and oversized clients, the drain (service/server.py)
    └── runtime: RuntimeOptions     which artifact runs where (service/runtimes/base.py)

Each group is defined beside the code it configures and handed to it whole. A group's field
is set as `ACTSERVE_<GROUP>__<FIELD>` (`ACTSERVE_VIDEO__MAX_PIXELS`) or by its flat name,
`ACTSERVE_<FIELD>` (`ACTSERVE_MAX_PIXELS`), unless the group's `flat_names` gives another
(`ACTSERVE_DECODE_WORKERS` for `decode.workers`); the nested name wins when both are set.
Keyword arguments take the same flat names, or the groups as objects or dicts.

Built once by `create_app(settings)` and reached through the `SettingsDep` dependency; nothing
reads the environment at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from service.admission import AdmissionSettings
from service.batching import BatchingSettings
from service.runtimes.base import RuntimeOptions
from service.server import HttpSettings
from service.video.limits import VideoLimits, split_commas
from service.video.pool import DecodeSettings

BUNDLED_STORE = Path(__file__).resolve().parent / "bundled_store"
ENV_PREFIX = "ACTSERVE_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    #: The nested groups, by field name.
    groups: ClassVar[dict[str, type[BaseModel]]] = {
        "video": VideoLimits,
        "decode": DecodeSettings,
        "admission": AdmissionSettings,
        "batching": BatchingSettings,
        "runtime": RuntimeOptions,
        "http": HttpSettings,
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
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # Requests.
    request_timeout_s: float = Field(120.0, gt=0, description="Deadline of a request → 504.")
    drain_timeout_s: float = Field(30.0, ge=0, description="Wait for in-flight requests.")
    max_top_k: int = Field(100, ge=1, description="Largest top_k a request may ask for.")
    upload_dir: Path | None = Field(None, description="Where uploads are spooled (system tmp).")

    # Admin.
    admin_token: SecretStr | None = Field(
        None, description="Bearer token enabling the /admin endpoints (disabled when unset)."
    )

    # The groups.
    video: VideoLimits = Field(default_factory=VideoLimits)
    decode: DecodeSettings = Field(default_factory=DecodeSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @classmethod
    def flat_names(cls) -> dict[str, tuple[str | None, str]]:
        """Every flat setting name (lower case, no prefix) → (group or None, field)."""
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
        """Every environment variable the settings read: flat and nested names."""
        flat = {ENV_PREFIX + name.upper() for name in cls.flat_names()}
        nested = {
            f"{ENV_PREFIX}{group.upper()}__{field.upper()}"
            for group, model in cls.groups.items()
            for field in model.model_fields
        }
        return flat | nested

    def __init__(self, **values: Any) -> None:
        super().__init__(**self.nest(values))

    @classmethod
    def nest(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Move flat names (`max_pixels`) and dotted ones (`video.max_pixels`) into their
        group; a value given in the group itself wins."""
        names = cls.flat_names()
        out: dict[str, Any] = {}
        moved: list[tuple[str, str, Any]] = []
        for key, value in values.items():
            group, _, field = key.rpartition(".")
            if group in cls.groups:
                moved.append((group, field, value))
            elif names.get(key, (None,))[0] is not None:
                moved.append((*names[key], value))
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
        flat_env = _FlatEnvSource(settings_cls)
        return (init_settings, env_settings, flat_env, dotenv_settings, file_secret_settings)


class _FlatEnvSource(PydanticBaseSettingsSource):
    """The groups' flat `ACTSERVE_<NAME>` variables, put in their groups; ranked below the
    nested `ACTSERVE_<GROUP>__<FIELD>` variables and keyword arguments."""

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
