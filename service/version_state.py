"""Where a model version stands in a serving process: shared by the lifecycle
(`service.loaded_models`) and the API's answers (`service.schemas`), and light enough that
the Python client imports it without the serving stack."""

from __future__ import annotations

from enum import StrEnum


class VersionState(StrEnum):
    """Where a model version stands in this process."""

    #: In the store, not loaded here.
    AVAILABLE = "available"
    #: Verified, warmed up and taking requests.
    LOADED = "loaded"
    #: No longer routed: its requests in flight finish, then it is freed.
    DRAINING = "draining"
    #: Freed.
    CLOSED = "closed"
    #: Routed, but it failed to load (damaged files, no usable runtime): refused, the
    #: others serve.
    BROKEN = "broken"
