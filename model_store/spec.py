"""The model spec: what a model expects as input and what it returns.

One `ModelSpec` travels from the backbone registry (each registered model carries its default),
through `load_checkpoint` (which fills it from the checkpoint file), into the exported
artifact's manifest and on to the service, whose video sampler reads its `Recipe`. Nobody
re-derives it. It lives here, in the torch-free store package, because the store and the
service must be able to read it without importing torch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_store.labels import load_label_set


class ChannelOrder(StrEnum):
    RGB = "RGB"
    BGR = "BGR"


class Sampling(StrEnum):
    """How test clips are drawn from a video."""

    #: `num_clips` clips of `clip_len` frames, `frame_interval` apart, evenly spread over the
    #: video; short videos loop (mmaction2 `SampleFrames` in test mode).
    UNIFORM = "uniform"
    #: TSN/TSM: the video is cut into `clip_len` equal segments and one frame is taken from the
    #: middle of each; `num_clips` > 1 shifts the frames inside the segments (mmaction2
    #: `twice_sample`).
    SEGMENTS = "segments"


class Modality(StrEnum):
    """What a model's views hold."""

    #: Decoded frames, normalised per colour channel.
    RGB = "rgb"
    #: TV-L1 optical flow between consecutive frames, x and y as grey levels (0..255, zero
    #: motion at 128), stacked on the channel axis (service/video/flow.py).
    FLOW = "flow"


class Profile(StrEnum):
    """How much of the recipe a request runs."""

    #: One clip × the centre crop: lowest latency.
    FAST = "fast"
    #: The recipe's full test protocol: num_clips × num_crops views.
    ACCURATE = "accurate"


class Recipe(BaseModel):
    """The test-time input recipe of a model: sampling, resizing, cropping, normalisation.

    A clip tensor is built as `(pixel / 255 * pixel_scale - mean) / std`, channels in
    `channel_order`, laid out (C, T, H, W) with T = `clip_len` and H = W = `crop_size`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Temporal sampling.
    sampling: Sampling = Sampling.UNIFORM
    clip_len: int = Field(ge=1, le=512, description="Frames per clip (segments for TSN/TSM).")
    frame_interval: int = Field(
        ge=1, le=64, description="Stride between sampled frames, in frames of the source video."
    )
    num_clips: int = Field(ge=1, le=64, description="Clips per video in the full test protocol.")
    # Spatial sampling.
    num_crops: Literal[1, 3] = Field(
        description="Spatial crops per clip: 1 = centre, 3 = left/centre/right along the long side."
    )
    short_side: int = Field(ge=16, le=1024, description="Resize the short side to this first.")
    crop_size: int = Field(ge=16, le=1024, description="Square crop side fed to the network.")
    train_crop_size: int | None = Field(
        None,
        ge=16,
        le=1024,
        description=(
            "Crop side the network was trained at, for fully convolutional heads (X3D, VoV3D): "
            "the head pools a window of the training geometry with stride 1, so a larger view "
            "is scored at every window position and the model returns the log of the mean "
            "class probabilities over the positions. None: the head pools the whole view."
        ),
    )
    # Pixel values.
    in_channels: int = Field(
        3, ge=1, le=20, description="3 = RGB frames; 2 × flow_frames_per_stack for optical flow."
    )
    pixel_scale: Literal[1.0, 255.0] = Field(
        description="Pixel values are scaled to [0, pixel_scale] before mean/std."
    )
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: ChannelOrder = ChannelOrder.RGB
    # Optical flow (issue 16). Manifests written before these fields load as RGB recipes.
    modality: Modality = Field(
        Modality.RGB,
        description=(
            "rgb: views are frames. flow: views are TV-L1 flow stacks between consecutive "
            "frames, as grey levels (pixel_scale and mean/std then apply to those levels)."
        ),
    )
    flow_bound: float = Field(
        20.0,
        gt=0,
        le=255,
        description="Flow is clipped to ±flow_bound px per frame, then mapped to 0..255.",
    )
    flow_frames_per_stack: int = Field(
        1,
        ge=1,
        le=10,
        description=(
            "Consecutive flow fields per time step, stacked on channels (x1, y1, x2, y2, ...): "
            "1 for 3-D flow nets (P3D, I3D: 2 channels); L for TSN-style stacks (2L)."
        ),
    )
    # Where these values come from, for people reading a manifest.
    source: str = ""

    @model_validator(mode="after")
    def _check_shapes(self) -> Recipe:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(
                f"mean and std need {self.in_channels} values (one per input channel), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.crop_size > self.short_side:
            raise ValueError(
                f"crop_size {self.crop_size} is larger than short_side {self.short_side}"
            )
        return self

    @model_validator(mode="after")
    def _check_flow(self) -> Recipe:
        if self.modality == Modality.FLOW and self.in_channels != 2 * self.flow_frames_per_stack:
            raise ValueError(
                f"a flow recipe with {self.flow_frames_per_stack} field(s) per stack takes "
                f"{2 * self.flow_frames_per_stack} channels (x, y each), not {self.in_channels}"
            )
        return self

    def as_flow(
        self, *, bound: float = 20.0, frames_per_stack: int = 1, source: str = ""
    ) -> Recipe:
        """This recipe's sampling and geometry for a flow net: TV-L1 grey levels, mean 128."""
        channels = 2 * frames_per_stack
        return Recipe.model_validate(
            {
                **self.model_dump(),
                "in_channels": channels,
                "pixel_scale": 255.0,
                "mean": (128.0,) * channels,
                "std": (1.0,) * channels,
                "modality": Modality.FLOW,
                "flow_bound": bound,
                "flow_frames_per_stack": frames_per_stack,
                "source": source or self.source,
            }
        )

    @property
    def frames_per_clip(self) -> int:
        """Frames decoded per clip: `clip_len`, or one more than the flow fields of a flow clip."""
        if self.modality == Modality.FLOW:
            return self.clip_len * self.flow_frames_per_stack + 1
        return self.clip_len

    @property
    def num_views(self) -> int:
        """Views per video in the full test protocol (clips × crops)."""
        return self.num_clips * self.num_crops

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """The (C, T, H, W) shape of one view as the network sees it."""
        return (self.in_channels, self.clip_len, self.crop_size, self.crop_size)


class ModelSpec(BaseModel):
    """A model's input recipe, outputs and label names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = Field(description="Registered backbone name, e.g. 'r3d_50'.")
    recipe: Recipe
    num_classes: int = Field(ge=1)
    embedding_dim: int = Field(ge=1, description="Width of the pooled embedding (N × D).")
    label_set: str | None = Field(
        None, description="Name of a bundled label set, e.g. 'kinetics400'."
    )
    labels: tuple[str, ...] | None = Field(
        None, description="Class names by index; filled from `label_set` when not given."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_labels(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("labels") is None:
            label_set = data.get("label_set")
            # A non-string is left to field validation, which names it (not a TypeError here).
            if isinstance(label_set, str) and label_set:
                data = {**data, "labels": load_label_set(label_set)}
        return data

    @model_validator(mode="after")
    def _check_labels(self) -> ModelSpec:
        if self.labels is not None and len(self.labels) != self.num_classes:
            source = f"label set {self.label_set!r}" if self.label_set else "labels"
            raise ValueError(
                f"{source} has {len(self.labels)} names but the model has "
                f"{self.num_classes} classes"
            )
        return self

    def relabel(
        self, labels: tuple[str, ...] | None = None, *, label_set: str | None = None
    ) -> ModelSpec:
        """The same spec with other class names: explicit `labels`, or a bundled `label_set`
        (validated again: the count must equal `num_classes`)."""
        fields = self.model_dump(exclude={"labels", "label_set"})
        return ModelSpec(**fields, labels=labels, label_set=label_set)

    def label_of(self, index: int) -> str:
        """The class name of `index`, or `class_<index>` for a model without names."""
        return self.labels[index] if self.labels is not None else f"class_{index}"
