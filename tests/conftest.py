"""Suite-wide: the `gpu` mark, and the tiny model's store that the service, client, deploy and
README tests share (exported once per run, not once per package that uses it)."""

from pathlib import Path

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests cleanly on machines without CUDA (CI has none)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny v1 (ONNX + TorchScript, alias stable) and v2 (ONNX), read-only for the tests
    (`tests.service.conftest.export_tiny`)."""
    from model_store import ModelStore
    from tests.service.conftest import export_tiny

    root = tmp_path_factory.mktemp("store")
    store = ModelStore(root)
    export_tiny(store, seed=0, formats=("onnx", "torchscript"), alias="stable")
    export_tiny(store, seed=1)
    return root


@pytest.fixture(scope="session", autouse=True)
def state_dirs(tmp_path_factory: pytest.TempPathFactory):
    """Every app the tests start keeps its state in the run's own directories, not the user's
    (inherited by the servers the tests start as processes): its jobs (SQLite file, uploads;
    ACTSERVE_JOBS_DIR) and OpenVINO's compiled models (ACTSERVE_OPENVINO_CACHE_DIR: the
    hundreds of throwaway versions the tests load neither fill nor evict the user's cache)."""
    with pytest.MonkeyPatch.context() as patch:
        for variable, name in (
            ("ACTSERVE_JOBS_DIR", "jobs"),
            ("ACTSERVE_OPENVINO_CACHE_DIR", "openvino-cache"),
        ):
            patch.setenv(variable, str(tmp_path_factory.mktemp(name)))
        yield


@pytest.fixture(scope="session")
def hf_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random model of each `transformers` family (`tests.exporters.hf_models`),
    saved as a user saves one and exported by `export_hf` as `hf-<family>`; read-only. Each
    model's directory is beside the store, `<family>/`."""
    from exporters.hf import export_hf
    from model_store import ModelStore
    from tests.exporters.hf_models import FAMILIES, build_hf_model

    root = tmp_path_factory.mktemp("hf")
    store = ModelStore(root / "store")
    for seed, family in enumerate(FAMILIES):
        source = build_hf_model(family, root / family, seed=seed)
        export_hf(str(source), store, name=f"hf-{family.replace('_', '-')}", trained=False)
    return root
