from __future__ import annotations

import pytest

from backbones import create_model
from exporters import export_to_store
from model_store import ModelStore, Recipe

#: Small clips keep exports to seconds on a 2-core CPU.
SMALL = Recipe(
    clip_len=8,
    frame_interval=2,
    num_clips=2,
    num_crops=1,
    short_side=40,
    crop_size=32,
    pixel_scale=1.0,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
)
LABELS = ("wave", "clap", "jump", "sit")


def small_model(seed: int = 0):
    torch_seed(seed)
    model = create_model("r3d_10", num_classes=len(LABELS), recipe=SMALL).eval()
    spec = model.spec.relabel(LABELS)
    return model, spec


def small_flow_model(seed: int = 1):
    """The flow twin of `small_model`: two input channels (x, y), TV-L1 grey levels."""
    torch_seed(seed)
    model = create_model("r3d_10", num_classes=len(LABELS), recipe=SMALL, in_channels=2).eval()
    spec = model.spec.relabel(LABELS)
    return model, spec


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One model exported in every format (and fp16) into a fresh store."""
    model, spec = small_model()
    store = ModelStore(tmp_path_factory.mktemp("store"))
    manifest = export_to_store(
        model,
        spec,
        store,
        trained=False,
        formats=("onnx", "torchscript"),
        fp16=True,
        alias="stable",
    )
    return model, spec, store, manifest
