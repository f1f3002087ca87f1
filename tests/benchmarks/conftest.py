from tests.service.video.conftest import videos  # noqa: F401  (the session video library)
