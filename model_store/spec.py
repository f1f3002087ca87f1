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
    """How test clips are drawn from a video: each value is one reference's temporal sampler."""

    #: `num_clips` clips of `clip_len` frames, `frame_interval` apart, evenly spread over the
    #: video; short videos loop (mmaction2 `SampleFrames._get_test_clips`, 3D branch).
    UNIFORM = "uniform"
    #: TSN/TSM: the video is cut into `clip_len` equal segments and one frame is taken from the
    #: middle of each; `num_clips` > 1 shifts the frames inside the segments (mmaction2
    #: `SampleFrames._get_test_clips`, `clip_len == 1` branch, `twice_sample`).
    SEGMENTS = "segments"
    #: PySlowFast `decoder.decode`: a clip spans `frame_interval × clip_len / target_fps × fps`
    #: source frames (fps-normalised), clip i of n starts at `delta × i / n`, and its frames are
    #: `linspace(start, start + span - 1, clip_len)` clamped to the video and truncated.
    SLOWFAST = "slowfast"
    #: PySlowFast Something-Something `get_seq_frames` (test mode): `clip_len` segments of
    #: `(n - 1) / clip_len` frames, the middle of each; one clip.
    SLOWFAST_SEGMENTS = "slowfast_segments"
    #: 3D-ResNets-PyTorch: back-to-back windows of `clip_len` frames over the whole video
    #: (`SlidingWindow`), the tail handled as `window_tail` says; `num_clips` is 1.
    SLIDING = "sliding"


class ResizeFilter(StrEnum):
    """The resampling filter of the short-side (or stretch) resize, as the reference ran it."""

    #: FFmpeg's swscale SWS_AREA, straight from the decoded YUV frame to the target size (the
    #: torchvision video reader's scaler; actserve's filter before schema 2).
    AREA = "area"
    #: OpenCV `cv2.resize(..., INTER_LINEAR)` on uint8 RGB (mmcv `imresize` 'bilinear', Caffe).
    CV2_LINEAR = "cv2_linear"
    #: Pillow `Image.resize(..., BILINEAR)` (torchvision `Resize` on PIL images).
    PIL_BILINEAR = "pil_bilinear"
    #: `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` on float frames
    #: (PySlowFast `random_short_side_scale_jitter`); re-implemented in numpy for the workers.
    TORCH_BILINEAR = "torch_bilinear"


class SizeRounding(StrEnum):
    """How the long side is rounded when the short side is resized to `short_side` S."""

    #: `int(long × (S / short) + 0.5)` (mmcv `rescale_size`).
    MMCV = "mmcv"
    #: `round(long × S / short)`, halves away from zero (torchvision video reader, FFmpeg).
    NEAREST = "nearest"
    #: `floor(long / short × S)` (PySlowFast `random_short_side_scale_jitter`).
    FLOOR = "floor"
    #: `int(S × long / short)` (torchvision `Resize(int)`, 3D-ResNets' `Scale`).
    TRUNCATE = "truncate"


class CropRule(StrEnum):
    """Where the centre crop, and the far crop of three, start on a side of length L."""

    #: Centre `(L - c) // 2`, far `2 × ((L - c) // 2)` (mmaction2 `CenterCrop`/`ThreeCrop`, Caffe).
    FLOOR = "floor"
    #: Centre `ceil((L - c) / 2)`, far `L - c` (PySlowFast `uniform_crop`).
    CEIL = "ceil"
    #: Centre `round((L - c) / 2)`, halves to even (torchvision `CenterCrop`); centre crop only.
    ROUND = "round"


class WindowTail(StrEnum):
    """What back-to-back windows (`per_clip`, sliding windows) do with a tail shorter than one."""

    #: Left out: the windows stop at the last whole window (actserve before schema 2).
    DROP = "drop"
    #: One more window whose frames repeat the tail's own frames in order (3D-ResNets-PyTorch
    #: `LoopPadding`).
    LOOP = "loop"
    #: Like `loop`, but a tail of a single frame is left out (the CVPR2018 branch starts windows
    #: at `range(1, n_frames, 16)`, 1-based, so no window starts at the last frame).
    LOOP_UNLESS_ONE = "loop_unless_one"
    #: One more window, ending at the last frame: it overlaps its predecessor, and its seconds say
    #: so. Every window holds real, consecutive frames sampled like a protocol clip.
    END = "end"


class Layout(StrEnum):
    """How an artifact's input tensor orders a batch of views."""

    #: (N, C, T, H, W): 3-D convolutions (every zoo family, PyTorchVideo, mmaction2's 3D heads).
    NCTHW = "NCTHW"
    #: (N, T, C, H, W): a sequence of frames (`transformers` VideoMAE, TimeSformer, ViViT).
    NTCHW = "NTCHW"


class Modality(StrEnum):
    """What a model's views hold."""

    #: Decoded frames, normalised per colour channel.
    RGB = "rgb"
    #: TV-L1 optical flow between consecutive frames, x and y as grey levels (0..255, zero
    #: motion at 128), stacked on the channel axis (service/video/flow.py).
    FLOW = "flow"


class Profile(StrEnum):
    """How much of the recipe a request runs."""

    #: One clip × the centre crop: lowest latency. actserve's own profile, not a paper protocol.
    FAST = "fast"
    #: The recipe's full test protocol: num_clips × num_crops views (all windows for `sliding`).
    ACCURATE = "accurate"


class PreScale(BaseModel):
    """A resize the reference made before its own pipeline ran, while extracting frames.

    3D-ResNets-PyTorch extracts JPEG frames with the ffmpeg CLI (`-vf scale=-1:240`, the CLI's
    default bicubic scaler, sizes rounded half up); that first resize is part of its protocol.
    The JPEG round trip that followed is not reproduced (it is storage loss, not a choice).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(ge=16, le=1024, description="Pixels of the scaled side.")
    side: Literal["short", "height"] = Field(
        "short", description="short: the short side (master); height: always the height (2018)."
    )


class Recipe(BaseModel):
    """The test-time input recipe of a model: sampling, resizing, cropping, normalisation.

    A clip tensor is built as `(pixel / 255 * pixel_scale - mean) / std`, channels in
    `channel_order`, laid out (C, T, H, W) with T = `clip_len` and H = W = `crop_size` (an
    artifact declared `layout` NTCHW is given its views as (T, C, H, W)).

    The fields after `short_side` and `crop_size` (schema 2) say exactly how the reference code
    resized and cut frames; their defaults are actserve's behaviour before them (FFmpeg's area
    filter, mmcv rounding, floor crop offsets, aspect kept, tail windows dropped), so a
    schema-1 manifest means what it meant.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Temporal sampling.
    sampling: Sampling = Sampling.UNIFORM
    clip_len: int = Field(ge=1, le=512, description="Frames per clip (segments for TSN/TSM).")
    frame_interval: int = Field(
        ge=1,
        le=64,
        description="Stride between sampled frames, in frames of the source video (slowfast: "
        "the sampling rate tau, in frames at `target_fps`).",
    )
    num_clips: int = Field(ge=1, le=64, description="Clips per video in the full test protocol.")
    target_fps: float | None = Field(
        None, gt=0, le=1000, description="slowfast: the frame rate clip spans are normalised to."
    )
    window_tail: WindowTail = WindowTail.DROP
    # Spatial sampling.
    num_crops: Literal[1, 3] = Field(
        description="Spatial crops per clip: 1 = centre, 3 = left/centre/right along the long side."
    )
    short_side: int = Field(ge=16, le=1024, description="Resize the short side to this first.")
    crop_size: int = Field(ge=16, le=1024, description="Square crop side fed to the network.")
    resize_filter: ResizeFilter = ResizeFilter.AREA
    size_rounding: SizeRounding = SizeRounding.MMCV
    stretch_to: tuple[int, int] | None = Field(
        None,
        description="(height, width) every frame is resized to, aspect not kept (P3D's "
        "182×242); `short_side` is then the smaller of the two.",
    )
    prescale: PreScale | None = None
    crop_rule: CropRule = CropRule.FLOOR
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
    layout: Layout = Field(
        Layout.NCTHW,
        description="The artifact's input layout. The service builds views as (C, T, H, W) "
        "whatever it is; an NTCHW artifact gets them transposed at the runtime's boundary.",
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

    @model_validator(mode="after")
    def _check_protocol(self) -> Recipe:
        """Combinations the reference code never runs, refused rather than guessed."""
        slowfast = self.sampling == Sampling.SLOWFAST
        if slowfast != (self.target_fps is not None):
            raise ValueError("target_fps is set exactly when sampling is 'slowfast'")
        if self.sampling in (Sampling.SLIDING, Sampling.SLOWFAST_SEGMENTS) and self.num_clips != 1:
            raise ValueError(
                f"sampling {self.sampling.value!r} takes num_clips 1 (sliding: the video's "
                "length sets the windows; slowfast_segments: the reference's test clip is one)"
            )
        if self.stretch_to is not None and min(self.stretch_to) != self.short_side:
            raise ValueError(
                f"stretch_to {self.stretch_to} needs short_side {min(self.stretch_to)} "
                f"(its smaller side), got {self.short_side}"
            )
        if self.prescale is not None and self.resize_filter == ResizeFilter.AREA:
            raise ValueError(
                "prescale is followed by the reference's own image resize: pick a resize_filter "
                "other than 'area'"
            )
        loop = self.window_tail in (WindowTail.LOOP, WindowTail.LOOP_UNLESS_ONE)
        if loop and self.sampling != Sampling.SLIDING:
            raise ValueError(
                f"window_tail {self.window_tail.value!r} is 3D-ResNets-PyTorch's LoopPadding: "
                "sampling 'sliding' only"
            )
        if self.crop_rule == CropRule.ROUND and self.num_crops != 1:
            raise ValueError("crop_rule 'round' (torchvision CenterCrop) has no three-crop form")
        return self

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """One view as the artifact takes it: `clip_shape` in the recipe's `layout`."""
        c, t, h, w = self.clip_shape
        return (c, t, h, w) if self.layout == Layout.NCTHW else (t, c, h, w)

    @property
    def num_views(self) -> int:
        """Views per video in the full test protocol (clips × crops; per window for sliding)."""
        return self.num_clips * self.num_crops

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """The (C, T, H, W) shape of one view as the network sees it."""
        return (self.in_channels, self.clip_len, self.crop_size, self.crop_size)

    def describe(self) -> str:
        """One line for people: the protocol, the geometry and the pixel values."""
        scale = "[0, 1]" if self.pixel_scale == 1.0 else "0..255"
        if self.sampling == Sampling.SLIDING:
            clips = f"every {self.clip_len}-frame window ({self.window_tail.value} tail)"
        else:
            clips = f"{self.num_clips} clips"
        fps = f" at {self.target_fps:g} fps" if self.target_fps else ""
        resize = (
            f"stretched to {self.stretch_to[0]}×{self.stretch_to[1]}"
            if self.stretch_to
            else f"short side {self.short_side} ({self.size_rounding.value} rounding)"
        )
        if self.prescale:
            side = "short side" if self.prescale.side == "short" else "height"
            resize = f"{side} {self.prescale.size} (bicubic), then " + resize
        return (
            f"{self.sampling.value} {self.clip_len} frames × interval {self.frame_interval}{fps}, "
            f"{clips} × {self.num_crops} crops; {resize}, {self.resize_filter.value} filter, "
            f"crop {self.crop_size} ({self.crop_rule.value} offsets); {self.channel_order} "
            f"{scale}, mean {list(self.mean)}, std {list(self.std)}"
            + ("; input NTCHW" if self.layout == Layout.NTCHW else "")
        )


class TensorNames(BaseModel):
    """Which tensors of the artifact are the clips, the logits and the embedding.

    actserve's own artifacts use the defaults. An imported one names its own: ONNX graph input
    and output names; for TorchScript, an output is a key of the dict the module returns or a
    position (`0`, `1`, ...) in its tuple (a module returning one tensor has position `0`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str = Field("clips", min_length=1, description="The clip batch.")
    logits: str = Field("logits", min_length=1, description="Class scores before softmax, (N, K).")
    embedding: str = Field(
        "embedding", min_length=1, description="The pooled features the classifier reads, (N, D)."
    )

    def pick(self, result: object, role: Literal["logits", "embedding"]) -> object:
        """One output of a TorchScript module's `result`: a dict key, a tuple position, or the
        single tensor (position 0). Named tuple entries are actserve's own (logits, embedding)."""
        name = self.logits if role == "logits" else self.embedding
        if isinstance(result, dict):
            if name not in result:
                raise KeyError(f"the module's outputs are {sorted(result)}, not {name!r}")
            return result[name]
        if isinstance(result, tuple | list):
            index = int(name) if name.isdigit() else ("logits", "embedding").index(role)
            if index >= len(result):
                raise KeyError(f"the module returns {len(result)} outputs, no position {index}")
            return result[index]
        if name != "0":
            raise KeyError(f"the module returns one tensor (position 0), not {name!r}")
        return result


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
    tensors: TensorNames = Field(
        default_factory=TensorNames, description="The artifact's names for clips and outputs."
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
