"""TPN: a Temporal Pyramid Network neck on a SlowOnly-R50 or a TSM-R50 backbone.

Yang, Xu, Shi, Dai, Zhou, "Temporal Pyramid Network for Action Recognition", CVPR 2020.
Reference code: open-mmlab/mmaction2 (commit 4d6c934, the 1.2.0 release): `necks/tpn.py`,
`heads/tpn_head.py`, `backbones/resnet3d_slowonly.py`, `backbones/resnet_tsm.py` and the
configs `tpn-slowonly_r50_8xb8-8x8x1-150e_kinetics400-rgb` and
`tpn-tsm_imagenet-pretrained-r50_8xb8-1x1x8-150e_sthv1-rgb`. The TSM part follows Lin, Gan,
Han, "TSM: Temporal Shift Module for Efficient Video Understanding", ICCV 2019.

The neck reads res4 and res5, aligns their spatial semantics (strided convs on res4), pools
each level over time (grouped 3×1×1 conv, then max over 8-frame windows), fuses the levels
top-down and then bottom-up (the "cascade" flow), and fuses the two pyramids. An auxiliary
head on res4 only adds a training loss: files carry its weights, inference never reads them,
and the model here does not build it.

The temporal max pool (8, 1, 1), stride 8, ceil mode, takes non-overlapping 8-frame windows.
Clips of 8, 16, 24, ... frames give exactly the reference's numbers; any other length would
leave a partial last window that the head then weighs like a full one, so it is refused
(`ClipShapeError`) rather than silently computed. The TSM trunk runs on the clip's frames as
images, (N·T, C, H, W), and shifts along each clip's own T: mmaction2 fixes the segment count
in its config (8), and the two agree at T = 8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from backbones.checkpoints import CheckpointLayout, Identified, register_layout
from backbones.errors import UnrecognisedCheckpointError
from backbones.layers import ClassifierHead, VideoClassifier
from backbones.registry import register_model
from model_store.spec import Recipe, ResizeFilter, Sampling, WindowTail

__all__ = ["TPN", "TPN_SLOWONLY_RECIPE", "TPN_TSM_RECIPE", "TPNNeck"]

Trunk = Literal["slowonly", "tsm"]

MMACTION_MEAN = (123.675, 116.28, 103.53)
MMACTION_STD = (58.395, 57.12, 57.375)

TPN_SLOWONLY_RECIPE = Recipe(
    clip_len=8,
    frame_interval=8,
    num_clips=10,
    window_tail=WindowTail.END,
    num_crops=3,
    short_side=256,
    crop_size=256,
    resize_filter=ResizeFilter.CV2_LINEAR,
    pixel_scale=255.0,
    mean=MMACTION_MEAN,
    std=MMACTION_STD,
    source=(
        "mmaction2 tpn-slowonly_r50_8xb8-8x8x1-150e_kinetics400-rgb test pipeline: "
        "SampleFrames(8, 8, num_clips=10, test_mode) (loading.py _get_test_clips), "
        "Resize((-1, 256)) (mmcv rescale_size int(x·s + 0.5), imresize cv2 INTER_LINEAR), "
        "ThreeCrop(256) (offsets 0, (L-256)//2, 2·((L-256)//2)), RGB 0..255 minus the ImageNet "
        "mean over its std (data preprocessor); average_clips='prob' over the 30 views. "
        "Trained on 224 crops: the network is fully convolutional and the TPN head pools "
        "globally, so a 256 crop simply works (mmaction's fcn_test computes the same pooled "
        "logits)."
    ),
)

TPN_TSM_RECIPE = Recipe(
    sampling=Sampling.SEGMENTS,
    clip_len=8,
    frame_interval=1,
    num_clips=2,
    window_tail=WindowTail.END,
    num_crops=3,
    short_side=256,
    crop_size=256,
    resize_filter=ResizeFilter.CV2_LINEAR,
    pixel_scale=255.0,
    mean=MMACTION_MEAN,
    std=MMACTION_STD,
    source=(
        "mmaction2 tpn-tsm_imagenet-pretrained-r50_8xb8-1x1x8-150e_sthv1-rgb test pipeline: "
        "SampleFrames(1, 1, num_clips=8, twice_sample, test_mode) (8 segments, their middles "
        "then their starts), Resize((-1, 256)) (cv2 INTER_LINEAR), ThreeCrop(256), RGB "
        "0..255 minus the ImageNet mean over its std; each 8-segment view runs alone "
        "(fcn_test) and probabilities are averaged over the 6 views. Trained on 224 crops: "
        "fully convolutional with a global pool, so a 256 crop simply works."
    ),
)


# --------------------------------------------------------------------------- blocks


class ConvNorm(nn.Module):
    """conv -> [BN] -> [ReLU]: mmcv's ConvModule, without its naming layer."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        *,
        stride: tuple[int, int, int] = (1, 1, 1),
        padding: tuple[int, int, int] = (0, 0, 0),
        groups: int = 1,
        norm: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm3d(out_channels) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class Projection(nn.Module):
    """1×1(×1) conv carrying the spatial stride, then BN: a stage's first shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dims: int) -> None:
        super().__init__()
        if dims == 3:
            self.conv = nn.Conv3d(in_planes, out_planes, 1, stride=(1, stride, stride), bias=False)
            self.bn = nn.BatchNorm3d(out_planes)
        else:
            self.conv = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
            self.bn = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SlowOnlyStem(nn.Module):
    """conv 1×7×7 /(1,2,2) -> BN -> ReLU -> max pool (1,3,3) /(1,2,2): no temporal stride."""

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
        )
        self.bn = nn.BatchNorm3d(width)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))


class SlowOnlyBottleneck(nn.Module):
    """1×1×1 (3×1×1 when inflated) -> BN -> ReLU -> 1×3×3 (spatial stride) -> BN -> ReLU
    -> 1×1×1 (×4) -> BN, + shortcut, ReLU."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        inflate: bool = False,
        shortcut: nn.Module | None = None,
    ) -> None:
        super().__init__()
        kt = 3 if inflate else 1
        self.conv1 = nn.Conv3d(in_planes, planes, (kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(
            planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


def temporal_shift(x: torch.Tensor, frames: int, shift_div: int) -> torch.Tensor:
    """TSM's shift on frames laid out (N·T, C, H, W): the first C/shift_div channels take the
    next frame's values, the next C/shift_div the previous frame's, the rest stay; zeros
    enter at the clip's ends. Parameter-free."""
    nt, c, h, w = x.shape
    x = x.reshape(nt // frames, frames, c, h * w)
    fold = c // shift_div
    # F.pad's pairs run from the last dim backwards: (H·W, C, T).
    from_next = F.pad(x[:, 1:, :fold], (0, 0, 0, 0, 0, 1))
    from_previous = F.pad(x[:, :-1, fold : 2 * fold], (0, 0, 0, 0, 1, 0))
    return torch.cat([from_next, from_previous, x[:, :, 2 * fold :]], dim=2).reshape(nt, c, h, w)


class TSMStem(nn.Module):
    """The 2-D ResNet stem on each frame: conv 7×7 /2 -> BN -> ReLU -> max pool 3/2."""

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))


class ShiftBottleneck(nn.Module):
    """A 2-D ResNet bottleneck whose residual branch starts with the temporal shift
    (TSM "blockres"): shift -> 1×1 -> BN -> ReLU -> 3×3 (stride) -> BN -> ReLU -> 1×1 (×4)
    -> BN, + unshifted shortcut, ReLU."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        shift_div: int = 8,
        shortcut: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.shift_div = shift_div
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(temporal_shift(x, frames, self.shift_div))))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class TemporalModulation(nn.Module):
    """Grouped 3×1×1 conv (no BN, no ReLU), then max over non-overlapping `window`-frame
    windows (ceil mode, as the reference)."""

    def __init__(self, in_channels: int, out_channels: int, window: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, out_channels, (3, 1, 1), padding=(1, 0, 0), groups=groups, bias=False
        )
        self.pool = nn.MaxPool3d((window, 1, 1), stride=(window, 1, 1), ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class LevelFusion(nn.Module):
    """Per level a grouped 1×1×1 conv + BN + ReLU, concatenated, then 1×1×1 conv + BN + ReLU.

    NOTE: the reference wraps each per-level conv in a max pool of size (1, 1, 1), an identity
    in every published config; it is left out.
    """

    def __init__(self, channels: int, levels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.reduce = nn.ModuleList(
            ConvNorm(channels, channels, groups=groups) for _ in range(levels)
        )
        self.fuse = ConvNorm(channels * levels, out_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.fuse(
            torch.cat([op(f) for op, f in zip(self.reduce, features, strict=True)], dim=1)
        )


class TPNNeck(nn.Module):
    """The temporal pyramid over backbone levels (low to high), cascade flow.

    levels (C_i, T, H_i, W_i)
      ↓ spatial modulation: stride-(1,2,2) 1×3×3 conv + BN + ReLU, log2(C_top / C_i) times,
        so every level becomes C_top × T × H_top × W_top (the top level passes unchanged)
      ↓ temporal modulation: grouped 3×1×1 conv to `channels`, max over `window` frames
      ↓ top-down: level i += level i+1 (from the top); fusion -> `out_channels`
      ↓ bottom-up, on the top-down sums: level i+1 += 3×1×1 conv(level i); fusion
      ↓ pyramid fusion: concatenate both, 1×1×1 conv + BN + ReLU -> out_channels × T/window × …

    NOTE: the reference's upsample (scale 1) and bottom-up max pool (1, 1, 1) are identities in
    the published configs and are left out; they hold no weights.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (1024, 2048),
        *,
        channels: int = 1024,
        out_channels: int = 2048,
        window: int = 8,
        groups: int = 32,
    ) -> None:
        super().__init__()
        top = in_channels[-1]
        self.spatial_modulation = nn.ModuleList()
        for width in in_channels:
            steps = int(math.log2(top // width))
            convs = [
                ConvNorm(
                    width * 2**i,
                    width * 2 ** (i + 1),
                    (1, 3, 3),
                    stride=(1, 2, 2),
                    padding=(0, 1, 1),
                )
                for i in range(steps)
            ]
            self.spatial_modulation.append(nn.Sequential(*convs))
        self.temporal_modulation = nn.ModuleList(
            TemporalModulation(top, channels, window, groups) for _ in in_channels
        )
        levels = len(in_channels)
        self.top_down_fusion = LevelFusion(channels, levels, out_channels, groups)
        self.downsample = nn.ModuleList(
            ConvNorm(channels, channels, (3, 1, 1), padding=(1, 0, 0), norm=False, relu=False)
            for _ in range(levels - 1)
        )
        self.bottom_up_fusion = LevelFusion(channels, levels, out_channels, groups)
        self.pyramid_fusion = ConvNorm(out_channels * 2, out_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = [
            temporal(spatial(f))
            for f, spatial, temporal in zip(
                features, self.spatial_modulation, self.temporal_modulation, strict=True
            )
        ]
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + levels[i]
        top_down = self.top_down_fusion(levels)
        for i, down in enumerate(self.downsample):
            levels[i + 1] = levels[i + 1] + down(levels[i])
        bottom_up = self.bottom_up_fusion(levels)
        return self.pyramid_fusion(torch.cat([top_down, bottom_up], dim=1))


# --------------------------------------------------------------------------- network


class TPN(VideoClassifier):
    """TPN on a ResNet-50 trunk.

    clip (N, C, T, H, W), T a multiple of 8
      ↓ stem + res2..res5, no temporal stride:
          "slowonly": 3-D; res4/res5 first convs inflated to 3×1×1
          "tsm": 2-D on each frame, temporal shift at the start of every residual branch
      ↓ neck on res4 (1024 × T × H/16 × W/16) and res5 (2048 × T × H/32 × W/32)
                                                         -> 2048 × T/8 × H/32 × W/32
      ↓ global average pool -> embedding (N, 2048)
      ↓ head: dropout, fc -> logits (N, K)
    """

    min_side = 32

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: Trunk = "slowonly",
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        in_channels: int = 3,
        shift_div: int = 8,
        temporal_window: int = 8,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(in_channels=in_channels, embedding_dim=2048, num_classes=num_classes)
        if trunk not in ("slowonly", "tsm"):
            raise ValueError(f"trunk must be 'slowonly' or 'tsm', got {trunk!r}")
        self.trunk = trunk
        # NOTE: the temporal modulation max-pools non-overlapping windows in ceil mode; a
        # partial last window would weigh as much as a full one, so such clips are refused.
        self.temporal_window = self.min_frames = self.frame_multiple = temporal_window
        self.stem = SlowOnlyStem(in_channels) if trunk == "slowonly" else TSMStem(in_channels)
        block_cls = SlowOnlyBottleneck if trunk == "slowonly" else ShiftBottleneck
        in_planes, stages = 64, []
        for index, (depth, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            stride, out_planes = (1 if index == 0 else 2), planes * 4
            # SlowOnly inflates res4/res5's first conv to 3×1×1; TSM shifts in every block.
            option = {"inflate": index >= 2} if trunk == "slowonly" else {"shift_div": shift_div}
            blocks = []
            for b in range(depth):
                block_stride = stride if b == 0 else 1
                shortcut = None
                if block_stride != 1 or in_planes != out_planes:
                    dims = 3 if trunk == "slowonly" else 2
                    shortcut = Projection(in_planes, out_planes, block_stride, dims)
                blocks.append(
                    block_cls(in_planes, planes, stride=block_stride, shortcut=shortcut, **option)
                )
                in_planes = out_planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.neck = TPNNeck((1024, 2048), channels=1024, out_channels=2048, window=temporal_window)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = ClassifierHead(self.embedding_dim, num_classes, dropout)

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """res4 and res5 as (N, C, T, H, W), the neck's input."""
        n, _, frames, _, _ = x.shape
        if self.trunk == "tsm":
            x = x.transpose(1, 2).flatten(0, 1)  # (N·T, C, H, W): one image per segment
        x = self.stem(x)
        levels = []
        for index, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, frames)
            if index >= 2:
                levels.append(x)
        if self.trunk == "tsm":
            levels = [f.unflatten(0, (n, frames)).transpose(1, 2) for f in levels]
        return levels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_clip(x)
        return self.pool(self.neck(self.forward_levels(x))).flatten(1)


# --------------------------------------------------------------------------- checkpoints

#: mmaction2 TPN recognizer key (prefix) -> ours, first match wins. `.net` is the wrapper
#: that TSM's shift puts around each block's first conv.
MMACTION_TPN_RENAMES: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
    (r"^backbone\.conv1\.(conv|bn)\.", r"stem.\1."),
    (
        r"^backbone\.layer(\d)\.(\d+)\.conv(\d)\.conv\.(net\.)?",
        lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.conv{m[3]}.",
    ),
    (
        r"^backbone\.layer(\d)\.(\d+)\.conv(\d)\.bn\.",
        lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.bn{m[3]}.",
    ),
    (
        r"^backbone\.layer(\d)\.(\d+)\.downsample\.(conv|bn)\.",
        lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}.",
    ),
    (r"^neck\.spatial_modulation\.spatial_modulation\.", "neck.spatial_modulation."),
    (r"^neck\.temporal_modulation_ops\.(\d+)\.conv\.conv\.", r"neck.temporal_modulation.\1.conv."),
    (r"^neck\.downsample_ops\.(\d+)\.conv\.conv\.", r"neck.downsample.\1.conv."),
    (r"^neck\.level_fusion_1\.downsamples\.(\d+)\.conv\.", r"neck.top_down_fusion.reduce.\1."),
    (r"^neck\.level_fusion_1\.fusion_conv\.", "neck.top_down_fusion.fuse."),
    (r"^neck\.level_fusion_2\.downsamples\.(\d+)\.conv\.", r"neck.bottom_up_fusion.reduce.\1."),
    (r"^neck\.level_fusion_2\.fusion_conv\.", "neck.bottom_up_fusion.fuse."),
    (r"^neck\.pyramid_fusion\.", "neck.pyramid_fusion."),
    (r"^cls_head\.fc_cls\.", "head.fc."),
]


def convert_mmaction_tpn(key: str) -> str | None:
    """mmaction2 TPN keys -> ours; None for the training-only auxiliary head.

    backbone.conv1.{conv,bn}                        -> stem.{conv,bn}
    backbone.layerL.i.convK.conv[.net]              -> stages.(L-1).i.convK
    backbone.layerL.i.convK.bn                      -> stages.(L-1).i.bnK
    backbone.layerL.i.downsample.{conv,bn}          -> stages.(L-1).i.shortcut.{conv,bn}
    neck.spatial_modulation.spatial_modulation.L.J  -> neck.spatial_modulation.L.J
    neck.temporal_modulation_ops.L.conv.conv        -> neck.temporal_modulation.L.conv
    neck.downsample_ops.L.conv.conv                 -> neck.downsample.L.conv
    neck.level_fusion_1.downsamples.L.conv          -> neck.top_down_fusion.reduce.L
    neck.level_fusion_1.fusion_conv                 -> neck.top_down_fusion.fuse
    neck.level_fusion_2.*                           -> neck.bottom_up_fusion.* (as above)
    neck.pyramid_fusion                             -> neck.pyramid_fusion
    neck.aux_head.*                                 -> None
    cls_head.fc_cls                                 -> head.fc

    Renaming goes by name: the file's order (its neck lists temporal modulation before
    spatial modulation, unlike the forward pass) does not matter.
    """
    if key.startswith("neck.aux_head."):
        return None
    for pattern, replacement in MMACTION_TPN_RENAMES:
        renamed, count = re.subn(pattern, replacement, key, count=1)
        if count:
            return renamed
    return key


def _identify_mmaction_tpn(state_dict: Mapping[str, torch.Tensor]) -> Identified:
    """SlowOnly (5-D stem conv) or TSM (4-D stem conv, shift wrappers); depths; classes."""
    stem = state_dict["backbone.conv1.conv.weight"]
    trunk = "slowonly" if stem.dim() == 5 else "tsm"
    blocks = [
        sorted({k.split(".")[2] for k in state_dict if k.startswith(f"backbone.layer{i}.")})
        for i in range(1, 5)
    ]
    layers = tuple(len(b) for b in blocks)
    if trunk == "tsm":
        unshifted = [
            f"layer{i + 1}.{b}"
            for i, stage in enumerate(blocks)
            for b in stage
            if f"backbone.layer{i + 1}.{b}.conv1.conv.net.weight" not in state_dict
        ]
        if unshifted:
            raise UnrecognisedCheckpointError(
                "the file holds a TPN on a 2-D ResNet whose blocks "
                f"{', '.join(unshifted[:4])}{', …' if len(unshifted) > 4 else ''} have no "
                "temporal shift; only TSM with a shift in every block is registered"
            )
    name = next(
        (n for n, cfg in model_cfgs.items() if cfg["trunk"] == trunk and cfg["layers"] == layers),
        None,
    )
    if name is None:
        raise UnrecognisedCheckpointError(
            f"the file holds a TPN on a {trunk} ResNet with blocks {layers}; registered: "
            + ", ".join(f"{n} ({c['trunk']} {c['layers']})" for n, c in model_cfgs.items())
        )
    return Identified(
        model=name,
        num_classes=state_dict["cls_head.fc_cls.weight"].shape[0],
        variant={"in_channels": stem.shape[1]},
    )


def _is_mmaction_tpn(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return (
        "backbone.conv1.conv.weight" in state_dict
        and "neck.pyramid_fusion.conv.weight" in state_dict
        and "cls_head.fc_cls.weight" in state_dict
    )


def _tpn_recipe(model: VideoClassifier) -> Recipe:
    return TPN_TSM_RECIPE if getattr(model, "trunk", None) == "tsm" else TPN_SLOWONLY_RECIPE


register_layout(
    CheckpointLayout(
        name="mmaction2_tpn",
        description="open-mmlab/mmaction2 TPN recognizers (tpn-slowonly_r50 Kinetics-400, "
        "tpn-tsm_r50 Something-Something v1): mmengine {'state_dict', 'meta'}, keys backbone.*, "
        "neck.*, cls_head.*, ConvModule names (conv1.conv, conv1.bn)",
        recipe=_tpn_recipe,
        label_sets={400: "kinetics400", 174: "something-something-v1"},
        matches=_is_mmaction_tpn,
        identify=_identify_mmaction_tpn,
        convert_key=convert_mmaction_tpn,
    )
)


# --------------------------------------------------------------------------- variants

model_cfgs: dict[str, dict] = {
    # name               trunk                 blocks in res2..res5
    "tpn_slowonly_r50": dict(trunk="slowonly", layers=(3, 4, 6, 3)),
    "tpn_tsm_r50": dict(trunk="tsm", layers=(3, 4, 6, 3)),
}


def _create_tpn(variant: str, **kwargs: object) -> TPN:
    return TPN(**{**model_cfgs[variant], **kwargs})


# --------------------------------------------------------------------------- registered models


@register_model(recipe=TPN_SLOWONLY_RECIPE, label_set="kinetics400")
def tpn_slowonly_r50(**kwargs: object) -> TPN:
    return _create_tpn("tpn_slowonly_r50", **kwargs)


@register_model(recipe=TPN_TSM_RECIPE, label_set="something-something-v1")
def tpn_tsm_r50(**kwargs: object) -> TPN:
    """8 segments at training; any multiple of 8 shifts along the whole clip."""
    return _create_tpn("tpn_tsm_r50", **kwargs)
