"""Admission control where the work queues: uploads and decoding.

On CPU a request's time goes into decoding, so that is where overload is shed. A request is
refused with 429 *before its body is read* when the uploads in progress or the decode backlog
(requests waiting for a decode worker or decoding) are at their bounds, with a Retry-After
computed from the real backlog and the measured decode time; 503 while the server drains. The
inference queue keeps its own bound (the batcher's `max_queue_views`).

    with admission.admit(client) as ticket:     # 429 / 503 now, or a place
        ...receive the body..., then ticket.received()    # no longer an upload in progress
        decoded = await pool.decode(..., client=client)   # the pool's fair, bounded backlog

The decode backlog itself lives in `DecodePool` (its `max_pending` bound and round-robin
hand-out of workers across clients); this module decides at the door.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from service.errors import NotReady, Overloaded
from service.video import DecodePool

#: The most a Retry-After may say: beyond it the estimate is not worth trusting.
MAX_RETRY_AFTER_S = 300


class AdmissionSettings(BaseModel):
    """Bounds at the door; the `admission` group of the service's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Flat `ACTSERVE_*` names that differ from the field's name.
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


class Ticket:
    """One admitted request's place. As a context manager it counts as an upload in progress
    until `received()` (the body is in) or the block ends."""

    def __init__(self, admission: Admission, client: str) -> None:
        self.admission = admission
        self.client = client
        self._uploading = False

    def __enter__(self) -> Ticket:
        self.admission.uploads += 1
        self._uploading = True
        return self

    def received(self) -> None:
        if self._uploading:
            self._uploading = False
            self.admission.uploads -= 1

    def __exit__(self, *exc_info: object) -> None:
        self.received()


class Admission:
    """The door: refuses what the service cannot serve soon, says when to come back."""

    def __init__(
        self,
        settings: AdmissionSettings,
        pool: DecodePool,
        *,
        inference_backlog_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.inference_backlog_s = inference_backlog_s
        self.uploads = 0
        #: Bodies read outside admission (/v2 tensors), on their way to a batcher.
        self.bodies = 0
        #: Set when the server starts draining: new requests get 503.
        self.draining = False

    def client_of(self, headers: Mapping[str, str], peer: str | None) -> str:
        """The fairness key: the configured header's first value, else the peer address."""
        header = self.settings.client_header
        value = headers.get(header) if header else None
        if value:
            return value.split(",")[0].strip()[:128]
        return peer or "-"

    @property
    def upstream(self) -> int:
        """Requests that have not reached inference yet: uploading, waiting for a decode
        worker or decoding, or sending /v2 tensors (what a batcher may still expect views
        from)."""
        return self.uploads + self.bodies + self.pool.backlog

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """Count a body read outside admission's bounds (a /v2 request's tensors) as on its
        way to a batcher while it is read."""
        self.bodies += 1
        try:
            yield
        finally:
            self.bodies -= 1

    def admit(self, client: str) -> Ticket:
        """A place for a new request (enter it with `with`), or `NotReady` (draining) /
        `Overloaded` (full): decided before the request's body is read."""
        if self.draining:
            raise NotReady("the server is draining; retry on another replica")
        if self.uploads >= self.settings.max_uploads:
            raise Overloaded(
                f"{self.uploads} uploads are in progress (limit {self.settings.max_uploads}, "
                "ACTSERVE_MAX_CONCURRENT_UPLOADS); retry later",
                retry_after=self.retry_after(),
            )
        full = self.pool.full()
        if full is not None:
            raise Overloaded(f"{full}; retry later", retry_after=self.retry_after())
        return Ticket(self, client)

    def retry_after(self) -> int:
        """Seconds until a request sent now would likely be taken: the decode backlog at the
        measured decode time per request, plus the inference queue's."""
        seconds = self.pool.drain_estimate_s() + self.inference_backlog_s()
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(seconds)))
