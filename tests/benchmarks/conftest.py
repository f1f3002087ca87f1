from tests.service.conftest import store_root  # noqa: F401  (the tiny model's store)
from tests.service.video.conftest import videos  # noqa: F401  (the session video library)
