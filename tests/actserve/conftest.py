from tests.exporters.conftest import exported  # noqa: F401  (the module-scoped export fixture)
from tests.service.video.conftest import videos  # noqa: F401  (the session video library)
