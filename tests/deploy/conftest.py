"""The service tests' store (a tiny exported model) and generated videos, for the entrypoint run."""

from tests.service.conftest import store_root  # noqa: F401
from tests.service.video.conftest import videos  # noqa: F401
