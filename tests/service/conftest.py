"""A store with a tiny exported model, apps over it (through ASGI or a real uvicorn on
loopback) and the session's generated videos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from backbones import create_model
from exporters import export_to_store
from model_store import ModelStore, Recipe
from service.app import create_app
from service.embedded import EmbeddedServer
from service.settings import Settings
from tests.exporters.conftest import exported  # noqa: F401  (fp32 + fp16 ONNX + TorchScript)
from tests.service.video.conftest import videos  # noqa: F401  (the session video library)

LABELS = ("wave", "clap", "jump", "sit", "run")
#: 2 clips × 3 crops of 4 frames, 2 apart, at 32×32: a 6-view accurate profile.
RECIPE = Recipe(
    clip_len=4,
    frame_interval=2,
    num_clips=2,
    num_crops=3,
    short_side=40,
    crop_size=32,
    pixel_scale=1.0,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
)


def export_tiny(store: ModelStore, *, seed: int, name: str = "tiny", **kwargs) -> int:
    torch.manual_seed(seed)
    model = create_model("r3d_10", num_classes=len(LABELS), recipe=RECIPE)
    spec = model.spec.relabel(LABELS)
    return export_to_store(model, spec, store, trained=False, name=name, **kwargs).version


@pytest.fixture
def writable_store(tmp_path: Path, store_root: Path) -> Path:
    """A copy of the session store that a test may promote and roll back in."""
    import shutil

    target = tmp_path / "store"
    shutil.copytree(store_root, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def settings_for(store: Path, **overrides: object) -> Settings:
    defaults = dict(store=store, decode_workers=2, decode_timeout_s=30, max_delay_ms=2)
    return Settings(**{**defaults, **overrides})


@pytest.fixture(scope="module")
def client(store_root: Path) -> Iterator[TestClient]:
    """The app through ASGI (lifespan included), shared by a test module."""
    with TestClient(create_app(settings_for(store_root))) as test_client:
        yield test_client


#: The tests call it LiveServer: a real uvicorn on loopback (httpx's TestServer pattern).
LiveServer = EmbeddedServer


def post_video(client: httpx.Client | TestClient, path: Path, **params: object) -> httpx.Response:
    with path.open("rb") as f:
        return client.post("/classify", params=params, files={"video": (path.name, f, "video/mp4")})


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] != name:
            continue
        found = sample[len(name) :].strip("{}")
        if ",".join(sorted(found.split(","))) == wanted or (not wanted and not found):
            return float(value)
    return 0.0
