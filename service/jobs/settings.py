"""The `jobs` group of the service's settings: where durable jobs live and how they run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic_settings import NoDecode

from service.video.limits import split_commas


def default_jobs_dir() -> Path:
    """`$XDG_STATE_HOME/actserve/jobs` (`~/.local/state/actserve/jobs`): kept across restarts,
    unlike the system's temporary directory."""
    state = os.environ.get("XDG_STATE_HOME")
    if not state:
        try:
            state = Path.home() / ".local" / "state"
        except RuntimeError:  # no home directory at all
            state = Path(tempfile.gettempdir()) / "actserve-state"
    return Path(state) / "actserve" / "jobs"


class JobSettings(BaseModel):
    """Durable video jobs (`POST /jobs`); the `jobs` group of the service's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Flat `ACTSERVE_*` names that differ from the field's name.
    flat_names: ClassVar[dict[str, str]] = {
        "dir": "jobs_dir",
        "database_url": "jobs_database_url",
        "run": "jobs_run",
        "concurrency": "jobs_concurrency",
        "lease_s": "jobs_lease_s",
        "poll_s": "jobs_poll_s",
        "max_attempts": "jobs_max_attempts",
        "retention_s": "jobs_retention_s",
        "max_disk_bytes": "jobs_max_disk_bytes",
        "max_queued": "jobs_max_queued",
        "chunk_views": "jobs_chunk_views",
        "input_dirs": "jobs_input_dirs",
        "allowed_inputs": "jobs_allowed_inputs",
        "allowed_outputs": "jobs_allowed_outputs",
        "allowed_webhooks": "jobs_allowed_webhooks",
        "max_input_bytes": "jobs_max_input_bytes",
        "fetch_attempts": "jobs_fetch_attempts",
        "webhook_retry_s": "jobs_webhook_retry_s",
        "webhook_secret": "webhook_secret",
    }

    dir: Path | None = Field(
        None,
        description="Where job uploads (and the default SQLite database) are kept; default "
        "$XDG_STATE_HOME/actserve/jobs. Replicas that share a queue must share this directory.",
    )
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the jobs database, e.g. postgresql://user:pw@db/actserve "
        "(several replicas share one queue); default: an SQLite file in the jobs directory.",
    )
    run: bool = Field(
        True,
        description="Run queued jobs in this server process too (false: only accept them, and "
        "leave the running to `actserve worker` processes).",
    )
    concurrency: int = Field(1, ge=1, le=64, description="Jobs one process runs at once.")
    lease_s: float = Field(
        30.0,
        ge=1,
        description="A running job's lease: renewed every third of it; a job whose lease lapses "
        "(its process died) is taken over by another process from its last finished chunk.",
    )
    poll_s: float = Field(1.0, gt=0, description="How often an idle runner looks for work (s).")
    max_attempts: int = Field(
        5,
        ge=1,
        description="Times a job may be taken (after crashes or transient failures) before it "
        "fails for good.",
    )
    retention_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="Finished jobs (their results and records) are deleted this long after "
        "they finish.",
    )
    max_disk_bytes: int = Field(
        20 * 2**30,
        ge=1,
        description="Bytes of uploads the jobs directory may hold; a submit that would pass it "
        "is refused (507).",
    )
    max_queued: int = Field(
        1000, ge=1, description="Jobs queued or running; more submits are refused (429)."
    )
    chunk_views: int = Field(
        24,
        ge=1,
        description="Views per chunk of a job (its unit of progress, of resumption and of "
        "decode work): small chunks keep interactive requests' waits short.",
    )

    input_dirs: Annotated[tuple[Path, ...], NoDecode, BeforeValidator(split_commas)] = Field(
        (),
        description="Directories a JSON-bodied job may name files in (file:///...), "
        "comma-separated; none by default (jobs then take uploads only).",
    )

    # Inputs and outputs by URI, webhooks (service/jobs/remote.py, service/jobs/notify.py)
    allowed_inputs: Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_commas)] = Field(
        (),
        description="Input URIs a job may name, comma-separated: URL patterns "
        "(`s3://archive/*`, `https://media.example.com/*`) and networks (`10.0.0.0/8`) an "
        "https host may resolve into besides public ones. Empty (the default): jobs fetch no "
        "URI at all.",
    )
    allowed_outputs: Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_commas)] = Field(
        (),
        description="Output URI patterns a job may write its results under (`s3://results/*`), "
        "comma-separated; empty (the default): no job names an output_uri.",
    )
    allowed_webhooks: Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_commas)] = Field(
        (),
        description="Webhook URL patterns and networks, as ACTSERVE_JOBS_ALLOWED_INPUTS; "
        "empty (the default): any https URL whose host resolves to public addresses only.",
    )
    max_input_bytes: int = Field(
        4 * 2**30,
        ge=1,
        description="Largest video a job fetches by URI: refused at submit (413) when the "
        "object's size says more, cut off when a download grows past it.",
    )
    fetch_attempts: int = Field(
        4,
        ge=1,
        le=20,
        description="Tries to fetch an input (or write results) by URI, with exponential "
        "backoff, before the job fails with `remote_unavailable`.",
    )
    webhook_retry_s: float = Field(
        3600.0,
        gt=0,
        description="How long a job's webhook is retried (exponential backoff with jitter) "
        "before the delivery gives up; it is always tried at least once.",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="The Standard Webhooks signing secret (`whsec_` + base64) of every webhook "
        "the service sends (jobs and live streams); a webhook is refused while it is unset.",
    )

    def directory(self) -> Path:
        return self.dir if self.dir is not None else default_jobs_dir()

    def url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.directory() / 'jobs.db'}"
