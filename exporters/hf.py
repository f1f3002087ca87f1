"""`transformers` video classifiers (VideoMAE, TimeSformer, ViViT) -> checked ONNX -> the store.

The model comes from a local directory saved by `save_pretrained` (or a Hub id where the user
has network). Its artifact takes `pixel_values` (batch, T, C, H, W), as `transformers` does
(the recipe's layout is NTCHW), and returns `logits` and `embedding`, the pooled features the
classifier reads. It is checked against the `transformers` model itself on the same random
batches (fp32, relative tolerance `TOLERANCE`) before anything is published.

The recipe is derived, not typed in: the spatial part (short side, crop, filter, mean/std,
rescale and offset) from the model's image-processor configuration, the frames per clip from
the model configuration, and the temporal protocol (frame interval, clips × crops) from the
paper of the family, with its source in the recipe (`PROTOCOLS`).

Needs the `hf` extra (`pip install actserve[hf]`: transformers).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exporters.errors import ExportError, ParityError
from exporters.outputs import tensor_infos
from exporters.parity import compare
from exporters.pipeline import StepReporter, log_step, publish_version, tool_versions
from model_store import Artifact, Manifest, ManifestDraft, ModelStore, SourceCheckpoint
from model_store.manifest import ParityCheck, ParityReport
from model_store.spec import (
    CropRule,
    Layout,
    ModelSpec,
    Profile,
    Recipe,
    ResizeFilter,
    Sampling,
    SizeRounding,
    TensorNames,
)
from model_store.store import check_alias, check_name

FAMILIES = ("videomae", "timesformer", "vivit")
TENSORS = TensorNames(input="pixel_values", logits="logits", embedding="embedding")
#: fp32 ONNX Runtime vs `transformers` eager: max|diff| / max|eager| per output.
TOLERANCE = 1e-5
PARITY_BATCH_SIZES = (1, 2)
DEFAULT_OPSET = 18
#: PIL resample codes the service reproduces (Pillow BILINEAR).
_PIL_BILINEAR = 2


@dataclass(frozen=True)
class Protocol:
    """A family's test-time temporal protocol on one dataset, as its paper states it."""

    sampling: Sampling
    frame_interval: int
    num_clips: int
    num_crops: int
    source: str
    target_fps: float | None = None


_VIDEOMAE = "VideoMAE (Tong et al., NeurIPS 2022), §4 'Implementation details' and appendix"
_TIMESFORMER = "TimeSformer (Bertasius et al., ICML 2021), §4 'Inference' and its configs"
_VIVIT = "ViViT (Arnab et al., ICCV 2021), §4.1 'Implementation details'"

PROTOCOLS: dict[tuple[str, str], Protocol] = {
    ("videomae", "kinetics"): Protocol(
        Sampling.UNIFORM,
        4,
        5,
        3,
        f"{_VIDEOMAE}: Kinetics-400, 16 frames with a temporal stride of 4, 5 clips × 3 crops",
    ),
    ("videomae", "ssv2"): Protocol(
        Sampling.SEGMENTS,
        1,
        2,
        3,
        f"{_VIDEOMAE}: Something-Something V2, 16 frames sampled from 16 segments (TSN), "
        "2 clips × 3 crops",
    ),
    ("timesformer", "kinetics"): Protocol(
        Sampling.SLOWFAST,
        32,
        1,
        3,
        f"{_TIMESFORMER}: Kinetics-400, 8 frames at a sampling rate of 32 (at 30 fps; 16×16 "
        "for TimeSformer-HR, 96×4 for -L), one temporal clip × 3 spatial crops",
        target_fps=30.0,
    ),
    ("vivit", "kinetics"): Protocol(
        Sampling.UNIFORM,
        2,
        4,
        3,
        f"{_VIVIT}: Kinetics, 32 frames with a temporal stride of 2, 4 clips × 3 crops at test "
        "(our reading of the paper: check it before quoting accuracy)",
    ),
}
#: TimeSformer's sampling rate by frames per clip (TimeSformer_divST_8x32, HR 16x16, L 96x4).
_TIMESFORMER_RATES = {8: 32, 16: 16, 96: 4}


class HFVideoClassifier(nn.Module):
    """A `transformers` video classifier that also returns its embedding: its own forward
    with the classifier swapped for the identity gives the pooled features, the classifier
    (moved here, not copied) turns them into the logits. Every supported family's forward ends
    with `logits = self.classifier(pooled)`, so the two outputs are exactly the model's."""

    def __init__(self, model: nn.Module) -> None:
        """Takes `model` over (its classifier moves here): pass a copy to keep the original."""
        super().__init__()
        if not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise ExportError(f"{type(model).__name__} has no linear `classifier` head")
        self.head = model.classifier
        model.classifier = nn.Identity()
        self.model = model.eval()

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model(pixel_values=pixel_values).logits
        return self.head(embedding), embedding


def load_hf(source: str) -> tuple[nn.Module, dict[str, Any]]:
    """The model and its image-processor configuration (a plain dict) from a directory or Hub
    id. Raises ExportError with what is missing."""
    try:
        from transformers import AutoConfig, AutoModelForVideoClassification
    except ImportError:
        raise ExportError("export-hf needs transformers: pip install 'actserve[hf]'") from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local = Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read a transformers model from {source!r}: {exc}") from None
    if config.model_type not in FAMILIES:
        raise ExportError(
            f"{source!r} is a {config.model_type!r} model; export-hf takes "
            f"{', '.join(FAMILIES)} (import any other ONNX/TorchScript model with "
            "actserve import-artifact)"
        )
    processor = _processor_config(source, local)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForVideoClassification.from_pretrained(
            source, local_files_only=local, attn_implementation="eager"
        )
    return model.eval().float(), processor


def _processor_config(source: str, local: bool) -> dict[str, Any]:
    """The image processor's configuration, or the video processor's (transformers 5 saves
    VideoMAE's as video_preprocessor_config.json): the same resize, crop and normalisation."""
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.video_processing_utils import BaseVideoProcessor

    try:
        return ImageProcessingMixin.get_image_processor_dict(source, local_files_only=local)[0]
    except OSError:
        pass
    try:
        return BaseVideoProcessor.get_video_processor_dict(source, local_files_only=local)[0]
    except OSError as exc:
        raise ExportError(
            f"{source!r} has no image-processor configuration (preprocessor_config.json or "
            f"video_preprocessor_config.json) to derive the recipe from: {exc}"
        ) from None


def derive_recipe(
    model_config: Any, processor: dict[str, Any], *, dataset: str = "kinetics"
) -> Recipe:
    """The recipe: geometry and pixel values from the image processor, frames per clip from
    the model, the temporal protocol from the family's paper on `dataset`."""
    family = model_config.model_type
    protocol = PROTOCOLS.get((family, dataset))
    if protocol is None:
        known = sorted(d for f, d in PROTOCOLS if f == family)
        raise ExportError(f"no {dataset!r} protocol for {family}; known: {', '.join(known)}")
    clip_len = int(model_config.num_frames)
    interval = protocol.frame_interval
    source = protocol.source
    if family == "timesformer" and clip_len != 8:
        interval = _TIMESFORMER_RATES.get(clip_len, max(1, round(256 / clip_len)))
        source += f"; {clip_len} frames at a sampling rate of {interval}"
    if processor.get("do_resize", True) is False or processor.get("resample", 2) != _PIL_BILINEAR:
        raise ExportError(
            "the image processor does not resize with Pillow's bilinear filter "
            f"(do_resize={processor.get('do_resize')}, resample={processor.get('resample')}); "
            "publish it with import-artifact and a recipe of your own"
        )
    size = processor.get("size") or {}
    crop = processor.get("crop_size") or {}
    if "shortest_edge" not in size:
        raise ExportError(f"the image processor's size {size} has no shortest_edge")
    short_side = int(size["shortest_edge"])
    crop_size = short_side
    if processor.get("do_center_crop", True):
        if crop.get("height") != crop.get("width"):
            raise ExportError(f"the image processor's crop {crop} is not square")
        crop_size = int(crop["height"])
    processor_type = (
        processor.get("image_processor_type") or processor.get("video_processor_type") or "unnamed"
    )
    image_size = model_config.image_size
    if crop_size != image_size:
        raise ExportError(f"the processor crops {crop_size} px but the model takes {image_size}")
    return Recipe(
        sampling=protocol.sampling,
        clip_len=clip_len,
        frame_interval=interval,
        num_clips=protocol.num_clips,
        target_fps=protocol.target_fps,
        num_crops=protocol.num_crops,
        short_side=short_side,
        crop_size=crop_size,
        resize_filter=ResizeFilter.PIL_BILINEAR,
        size_rounding=SizeRounding.TRUNCATE,  # transformers: int(size × long / short)
        crop_rule=CropRule.FLOOR,  # transformers' center_crop: (L - c) // 2
        pixel_scale=1.0,
        **_normalisation(processor),
        layout=Layout.NTCHW,
        source=f"{source}; spatial: the model's image processor ({processor_type})",
    )


def _normalisation(processor: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    """The processor's `((p × r + offset) - mean) / std` as the recipe's `(p/255 - m) / s`."""
    rescale = (
        float(processor.get("rescale_factor", 1 / 255))
        if processor.get("do_rescale", True)
        else 1.0
    )
    offset = -1.0 if processor.get("offset", False) else 0.0
    normalise = processor.get("do_normalize", True)
    mean = processor.get("image_mean", (0.0,) * 3) if normalise else (0.0,) * 3
    std = processor.get("image_std", (1.0,) * 3) if normalise else (1.0,) * 3
    scale = 255.0 * rescale
    return {
        "mean": tuple((float(m) - offset) / scale for m in mean),
        "std": tuple(float(s) / scale for s in std),
    }


def spec_of(model: nn.Module, recipe: Recipe) -> ModelSpec:
    config = model.config
    labels = tuple(config.id2label[i] for i in range(config.num_labels))
    return ModelSpec(
        backbone=config.model_type,
        recipe=recipe,
        num_classes=config.num_labels,
        embedding_dim=model.classifier.in_features,
        labels=labels,
        tensors=TENSORS,
    )


def export_hf_onnx(wrapper: HFVideoClassifier, spec: ModelSpec, path: Path, opset: int) -> None:
    """torch.export-based ONNX export with a dynamic batch axis, then the ONNX checker."""
    import onnx

    example = torch.randn((2, *spec.recipe.input_shape), generator=torch.Generator().manual_seed(0))
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=[TENSORS.input],
                output_names=[TENSORS.logits, TENSORS.embedding],
                dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}},
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # the exporter and checker raise many types
        raise ExportError(f"ONNX export of the {spec.backbone} model failed: {exc}") from exc


def check_hf_parity(
    model: nn.Module, wrapper: HFVideoClassifier, path: Path, spec: ModelSpec
) -> ParityReport:
    """ONNX Runtime vs `transformers` on the same random batches: the logits against the
    untouched model's own forward, the embedding against the wrapper's eager pooled features."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    checks: list[ParityCheck] = []
    for batch_size in PARITY_BATCH_SIZES:
        generator = torch.Generator().manual_seed(batch_size)
        clips = torch.randn((batch_size, *spec.recipe.input_shape), generator=generator)
        with torch.no_grad():
            references = (model(pixel_values=clips).logits.numpy(), wrapper(clips)[1].numpy())
        ours = session.run([TENSORS.logits, TENSORS.embedding], {TENSORS.input: clips.numpy()})
        for name, mine, reference in zip(("logits", "embedding"), ours, references, strict=True):
            if mine.shape != reference.shape:
                raise ExportError(
                    f"{name}: ONNX gives {mine.shape}, transformers {reference.shape}"
                )
            checks.append(compare(batch_size, name, mine, reference))
    passed = all(c.max_rel_diff <= TOLERANCE for c in checks) and all(
        c.top1_agreement in (None, 1.0) for c in checks
    )
    return ParityReport(
        runtime=f"onnxruntime {ort.__version__} CPU",
        tolerance=TOLERANCE,
        checks=tuple(checks),
        passed=passed,
    )


def export_hf(
    source: str,
    store: ModelStore,
    *,
    name: str | None = None,
    dataset: str = "kinetics",
    recipe_overrides: dict[str, Any] | None = None,
    trained: bool = True,
    alias: str | None = None,
    opset: int = DEFAULT_OPSET,
    description: str = "",
    default_profile: Profile = Profile.ACCURATE,
    step: StepReporter = log_step,
) -> Manifest:
    """Export the `transformers` model at `source` to ONNX, check it against the model and
    publish it as the next version of `name` (default: the directory's or Hub id's last part).
    `recipe_overrides` replaces derived recipe fields (e.g. another `num_clips`)."""
    name = check_name(name or source.rstrip("/").rsplit("/", 1)[-1])
    if alias is not None:
        check_alias(alias)
    with step(f"Loading {source} with transformers"):
        model, processor = load_hf(source)
    recipe = derive_recipe(model.config, processor, dataset=dataset)
    if recipe_overrides:
        try:
            recipe = Recipe.model_validate({**recipe.model_dump(), **recipe_overrides})
        except ValueError as exc:
            raise ExportError(f"the recipe overrides are not valid: {exc}") from None
    spec = spec_of(model, recipe)
    wrapper = HFVideoClassifier(copy.deepcopy(model))
    with tempfile.TemporaryDirectory(prefix="actserve-export-hf-") as tmp:
        path = Path(tmp) / "model.onnx"
        with step(f"Exporting {spec.backbone} to ONNX, opset {opset}"):
            export_hf_onnx(wrapper, spec, path, opset)
        with step("Checking the ONNX artifact against the transformers model"):
            report = check_hf_parity(model, wrapper, path, spec)
        if not report.passed:
            raise ParityError(path.name, report)
        inputs, outputs = tensor_infos(spec)
        artifact = Artifact(
            format="onnx",
            file=path.name,
            opset=opset,
            inputs=inputs,
            outputs=outputs,
            parity=report,
        )
        draft = ManifestDraft(
            backbone=spec.backbone,
            trained=trained,
            description=description or f"transformers {type(model).__name__} from {source}",
            default_profile=default_profile,
            source_checkpoint=_describe_source(source, model),
            spec=spec,
            artifacts=(artifact,),
            exporter={**tool_versions(), "transformers": _transformers_version()},
        )
        return publish_version(store, name, draft, {path.name: path}, alias, step)


def _describe_source(source: str, model: nn.Module) -> SourceCheckpoint:
    """A local directory: its weight files and their digest. A Hub id: the id and the commit
    the weights came from."""
    layout = f"transformers {model.config.model_type}"
    directory = Path(source)
    if not directory.is_dir():
        commit = getattr(model.config, "_commit_hash", None) or "unknown commit"
        return SourceCheckpoint(file_name=source, sha256=commit, layout=layout)
    weights = sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin"))
    digest = hashlib.sha256()
    for file in weights:
        with file.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    names = ", ".join(f.name for f in weights) or directory.name
    return SourceCheckpoint(file_name=names, sha256=digest.hexdigest(), layout=layout)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
