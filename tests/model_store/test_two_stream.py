"""Flow recipes and two-stream versions: old manifests still read as RGB, a two-stream
manifest is coherent or refused, and its member files are published and verified."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from model_store import (
    Fusion,
    IntegrityError,
    Manifest,
    ManifestDraft,
    Modality,
    ModelStore,
    PublishError,
    Recipe,
    StreamMember,
)
from tests.model_store.conftest import RECIPE, make_draft

FLOW = RECIPE.model_copy(
    update={
        "modality": Modality.FLOW,
        "in_channels": 2,
        "mean": (128.0, 128.0),
        "std": (1.0, 1.0),
        "pixel_scale": 255.0,
    }
)


def _member(modality: Modality, file: str) -> StreamMember:
    draft = make_draft(files=(file,))
    spec = (
        draft.spec if modality == Modality.RGB else draft.spec.model_copy(update={"recipe": FLOW})
    )
    return StreamMember(
        modality=modality, backbone="p3d_63", trained=True, spec=spec, artifacts=draft.artifacts
    )


def two_stream_draft(weights=None) -> ManifestDraft:
    rgb, flow = _member(Modality.RGB, "rgb.model.onnx"), _member(Modality.FLOW, "flow.model.onnx")
    return ManifestDraft(
        backbone="p3d_63+p3d_63",
        trained=True,
        spec=rgb.spec,
        artifacts=(),
        streams=(rgb, flow),
        fusion=Fusion(weights=weights or {"rgb": 1.0, "flow": 1.5}),
    )


def test_a_recipe_written_before_flow_reads_as_rgb() -> None:
    old = json.loads(RECIPE.model_dump_json())
    for field in ("modality", "flow_bound", "flow_frames_per_stack"):
        del old[field]
    recipe = Recipe.model_validate(old)
    assert recipe.modality == Modality.RGB and recipe.frames_per_clip == recipe.clip_len


def test_flow_recipe_channels_follow_the_stack() -> None:
    assert FLOW.frames_per_clip == FLOW.clip_len + 1 and FLOW.clip_shape[0] == 2
    tsn = FLOW.model_copy(update={"flow_frames_per_stack": 5, "in_channels": 10})
    Recipe.model_validate(tsn.model_dump() | {"mean": (128.0,) * 10, "std": (1.0,) * 10})
    with pytest.raises(ValidationError, match="takes 2 channels"):
        Recipe.model_validate(
            FLOW.model_dump() | {"in_channels": 3, "mean": (1,) * 3, "std": (1,) * 3}
        )
    with pytest.raises(ValidationError, match="flow_bound"):
        Recipe.model_validate(FLOW.model_dump() | {"flow_bound": 0})


def test_two_stream_draft_must_be_coherent() -> None:
    draft = two_stream_draft()
    assert draft.stream("flow").spec.recipe.modality == Modality.FLOW
    assert [a.file for a in draft.all_artifacts] == ["rgb.model.onnx", "flow.model.onnx"]
    fields = draft.model_dump()
    rgb, flow = draft.streams
    bad = {
        "two rgb streams": {"streams": (rgb, rgb)},
        "no fusion": {"fusion": None},
        "a missing weight": {"fusion": Fusion(weights={"rgb": 1.0})},
        "artifacts of its own": {"artifacts": rgb.artifacts},
        "an rgb recipe in the flow stream": {
            "streams": (rgb, flow.model_copy(update={"spec": rgb.spec}))
        },
        "other classes": {"spec": rgb.spec.model_copy(update={"num_classes": 4})},
        "views that do not pair up": {
            "streams": (
                rgb,
                flow.model_copy(
                    update={
                        "spec": flow.spec.model_copy(
                            update={"recipe": FLOW.model_copy(update={"num_clips": 3})}
                        )
                    }
                ),
            )
        },
    }
    for why, change in bad.items():
        with pytest.raises(ValidationError):
            ManifestDraft.model_validate(fields | change)
            pytest.fail(why)
    with pytest.raises(ValidationError, match="positive"):
        Fusion(weights={"rgb": 1.0, "flow": 0.0})
    with pytest.raises(ValidationError, match="needs streams"):
        ManifestDraft.model_validate(make_draft().model_dump() | {"fusion": draft.fusion})


def test_two_stream_version_publishes_and_verifies_every_member_file(
    tmp_path, artifact_file
) -> None:
    store = ModelStore(tmp_path / "store")
    draft = two_stream_draft()
    with pytest.raises(PublishError, match="flow.model.onnx"):
        store.publish("p3d-two-stream", draft, {"rgb.model.onnx": artifact_file})
    files = {"rgb.model.onnx": artifact_file, "flow.model.onnx": artifact_file}
    manifest = store.publish("p3d-two-stream", draft, files)
    again = store.verify("p3d-two-stream", manifest.version)
    assert isinstance(again, Manifest) and again.fusion.weights[Modality.FLOW] == 1.5
    assert set(again.files) == set(files)
    flow_file = store.version_dir("p3d-two-stream", 1) / "flow.model.onnx"
    flow_file.chmod(0o644)
    flow_file.write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=r"flow\.model\.onnx"):
        store.verify("p3d-two-stream", 1)


def test_a_member_artifact_without_a_digest_is_refused(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    files = {"rgb.model.onnx": artifact_file, "flow.model.onnx": artifact_file}
    store.publish("p3d-two-stream", two_stream_draft(), files)
    (store.root / "p3d-two-stream" / "index.json").unlink()  # only the manifest vouches
    path = store.version_dir("p3d-two-stream", 1) / "manifest.json"
    path.chmod(0o644)
    raw = json.loads(path.read_text())
    del raw["files"]["flow.model.onnx"]
    path.write_text(json.dumps(raw))
    with pytest.raises(IntegrityError, match=r"flow\.model\.onnx: an artifact the manifest has no"):
        store.verify("p3d-two-stream", 1)
