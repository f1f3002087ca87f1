from __future__ import annotations

from pathlib import Path

import pytest

from model_store import Artifact, ManifestDraft, ModelSpec, ParityCheck, ParityReport, Recipe
from model_store.manifest import TensorInfo

RECIPE = Recipe(
    clip_len=8,
    frame_interval=2,
    num_clips=2,
    num_crops=1,
    short_side=64,
    crop_size=48,
    pixel_scale=1.0,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
)


def make_draft(files: tuple[str, ...] = ("model.onnx",), labels: tuple[str, ...] | None = None):
    spec = ModelSpec(
        backbone="r3d_10", recipe=RECIPE, num_classes=3, embedding_dim=8, labels=labels
    )
    parity = ParityReport(
        runtime="test",
        tolerance=1e-4,
        checks=(ParityCheck(batch_size=1, output="logits", max_abs_diff=0, max_rel_diff=0),),
        passed=True,
    )
    artifacts = tuple(
        Artifact(
            format="onnx",
            file=name,
            inputs=(TensorInfo(name="clips", shape=("batch", 3, 8, 48, 48)),),
            outputs=(TensorInfo(name="logits", shape=("batch", 3)),),
            parity=parity,
        )
        for name in files
    )
    return ManifestDraft(backbone="r3d_10", trained=True, spec=spec, artifacts=artifacts)


@pytest.fixture
def artifact_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(b"onnx-bytes-" * 1000)
    return path
