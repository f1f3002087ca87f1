from tests.exporters.conftest import exported  # noqa: F401  (the module-scoped export fixture)
