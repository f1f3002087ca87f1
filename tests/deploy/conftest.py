"""The service tests' generated videos, for the entrypoint run (the store: tests/conftest.py)."""

from tests.service.video.conftest import videos  # noqa: F401
