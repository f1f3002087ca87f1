"""X3D: a tiny 2-D base network expanded along time, space, width and depth.

Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020.
Reference code: facebookresearch/SlowFast (287ec00; `video_model_builder.X3D`,
`configs/Kinetics/X3D_{XS,S,M,L}.yaml`, MODEL_ZOO.md) and facebookresearch/pytorchvideo
(pip 0.1.5; `models/x3d.py`, `models/hub/x3d.py`). Both releases compute the same network but
their weights are not interchangeable: pytorchvideo's first-stage shortcut has no BatchNorm
(`stage1_shortcut_bn=False`, read off the file).

XS, S and M are one network (width ×2, depth ×2.2) trained at different geometries: 4×160,
13×160 and 16×224 (frames × crop). L is deeper (×5.0) and trained at 16×312.

Fully convolutional testing. The head averages a window of the training geometry
(T, ⌈crop/32⌉, ⌈crop/32⌉) with stride 1, so the public test crops (182, 256, 356) leave 2×2 or 3×3
window positions; the reference scores each position and averages the softmax over them.
`forward` returns the projection logits when there is one position and otherwise scores whose
softmax is that average, so that softmax(forward(x)) is always the reference's output;
`forward_features` averages the per-position embeddings. Like the reference, clips smaller
than the window are refused (`min_frames`, `min_side`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from backbones.checkpoints import CheckpointLayout, Identified, register_layout
from backbones.errors import UnrecognisedCheckpointError
from backbones.layers import ClassifierHead, VideoClassifier
from backbones.registry import register_model
from model_store.spec import (
    CropRule,
    Recipe,
    ResizeFilter,
    Sampling,
    SizeRounding,
    WindowTail,
)

__all__ = [
    "X3D",
    "Projection",
    "SqueezeExcitation",
    "X3DEmbedding",
    "X3DStem",
    "X3DStyleNet",
    "average_position_scores",
    "slowfast_recipe",
    "x3d_recipe",
]


#: How PySlowFast-based code resized frames, by decoding backend: the torchvision video reader
#: scales while decoding (swscale SWS_AREA, long side C-rounded); the pyav backend decodes full
#: frames and `random_short_side_scale_jitter` resizes them with torch's bilinear interpolation
#: on floats (long side floored).
SLOWFAST_BACKENDS = {
    "torchvision": (ResizeFilter.AREA, SizeRounding.NEAREST),
    "pyav": (ResizeFilter.TORCH_BILINEAR, SizeRounding.FLOOR),
}


def slowfast_recipe(
    *,
    clip_len: int,
    frame_interval: int,
    train_crop: int,
    test_crop: int,
    source: str,
    backend: Literal["torchvision", "pyav"],
    sampling: Sampling = Sampling.SLOWFAST,
    num_clips: int = 10,
) -> Recipe:
    """PySlowFast's test protocol: `num_clips` fps-normalised clips (`decoder.decode`,
    TARGET_FPS 30), the short side resized to the test crop as the decoding `backend` does,
    3 square crops along the long side (`uniform_crop`, ceil offsets); RGB in [0, 1], mean 0.45
    and std 0.225 on every channel."""
    resize_filter, rounding = SLOWFAST_BACKENDS[backend]
    return Recipe(
        sampling=sampling,
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=num_clips,
        target_fps=30.0 if sampling == Sampling.SLOWFAST else None,
        window_tail=WindowTail.END,
        num_crops=3,
        short_side=test_crop,
        crop_size=test_crop,
        resize_filter=resize_filter,
        size_rounding=rounding,
        crop_rule=CropRule.CEIL,
        train_crop_size=train_crop,
        pixel_scale=1.0,
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
        source=source,
    )


#: The public zoo's Kinetics-400 recipes by training geometry (frames, crop):
#: variant, frame interval, test crop (30 views: 10 clips × 3 crops).
X3D_ZOO = {
    (4, 160): ("XS", 12, 182),
    (13, 160): ("S", 6, 182),
    (16, 224): ("M", 5, 256),
    (16, 312): ("L", 5, 356),
}


def x3d_recipe(model: VideoClassifier) -> Recipe:
    """The public zoo's recipe for the model's training geometry."""
    frames, crop = model.train_clip_len, model.train_crop_size
    if (frames, crop) not in X3D_ZOO:
        return slowfast_recipe(
            clip_len=frames,
            frame_interval=5,
            train_crop=crop,
            test_crop=crop,
            backend="torchvision",
            source=f"no public X3D recipe for training geometry {frames}×{crop}: PySlowFast's "
            "normalisation and 30-view protocol at the training crop",
        )
    name, interval, test_crop = X3D_ZOO[frames, crop]
    return slowfast_recipe(
        clip_len=frames,
        frame_interval=interval,
        train_crop=crop,
        test_crop=test_crop,
        backend="torchvision",
        source=f"PySlowFast configs/Kinetics/X3D_{name}.yaml (DECODING_BACKEND torchvision, "
        f"NUM_FRAMES {frames}, SAMPLING_RATE {interval}, TEST_CROP_SIZE {test_crop}) and "
        "MODEL_ZOO: datasets/decoder.py decode/temporal_sampling (span tau·T/30·fps, clip i "
        "of 10 at delta·i/10, linspace clamped), the torchvision reader scaling the short "
        f"side to {test_crop} (SWS_AREA, long side rounded), transform.uniform_crop (ceil "
        "offsets, 3 crops); RGB [0, 1], mean 0.45, std 0.225. Trained at "
        f"{crop}: views larger than that are scored fully convolutionally.",
    )


# --------------------------------------------------------------------------- blocks


def round_width(width: float, multiplier: float, *, min_width: int = 8, divisor: int = 8) -> int:
    """Scale a width and round it to a multiple of `divisor`, never more than 10 % below the
    exact product (the rounding of the X3D builder and of its SE blocks)."""
    width *= multiplier
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * width:
        rounded += divisor
    return int(rounded)


class SqueezeExcitation(nn.Module):
    """Channel gating: global average pool -> 1×1×1 conv -> ReLU -> 1×1×1 conv -> sigmoid,
    times the input. The bottleneck is channels/16 rounded to a multiple of 8 (at least 8)."""

    def __init__(self, channels: int, ratio: float = 1 / 16) -> None:
        super().__init__()
        width = round_width(channels, ratio)
        self.fc1 = nn.Conv3d(channels, width, 1)
        self.fc2 = nn.Conv3d(width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.adaptive_avg_pool3d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(gate))))


class X3DStem(nn.Module):
    """1×3×3 conv /(1,2,2) -> depthwise k×1×1 conv -> BN -> ReLU (no BN between the convs)."""

    def __init__(self, in_channels: int, width: int, temporal_kernel: int = 5) -> None:
        super().__init__()
        self.conv_s = nn.Conv3d(
            in_channels, width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False
        )
        self.conv_t = nn.Conv3d(
            width,
            width,
            (temporal_kernel, 1, 1),
            padding=(temporal_kernel // 2, 0, 0),
            groups=width,
            bias=False,
        )
        self.bn = nn.BatchNorm3d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv_t(self.conv_s(x))))


class Projection(nn.Module):
    """The shortcut of a stage's first block: 1×1×1 conv /(1,2,2), then BN (or none)."""

    def __init__(self, in_planes: int, out_planes: int, *, norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_planes, out_planes, 1, stride=(1, 2, 2), bias=False)
        self.bn = nn.BatchNorm3d(out_planes) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class X3DBlock(nn.Module):
    """1×1×1 -> BN -> ReLU -> depthwise 3×3×3 (spatial stride) -> BN -> [SE] -> Swish
    -> 1×1×1 -> BN, + shortcut, ReLU."""

    def __init__(
        self,
        in_planes: int,
        inner: int,
        out_planes: int,
        *,
        stride: int = 1,
        use_se: bool,
        shortcut: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(in_planes, inner, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(inner)
        self.conv_b = nn.Conv3d(
            inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False
        )
        self.bn_b = nn.BatchNorm3d(inner)
        self.se = SqueezeExcitation(inner) if use_se else nn.Identity()
        self.conv_c = nn.Conv3d(inner, out_planes, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(out_planes)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = F.silu(self.se(self.bn_b(self.conv_b(out))))
        out = self.bn_c(self.conv_c(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class X3DEmbedding(nn.Module):
    """conv5 1×1×1 -> BN -> ReLU -> average pool over a window of the training geometry,
    stride 1 -> lin5 1×1×1 (no bias) -> ReLU: one embedding per window position,
    (N, C, T, H, W) -> (N, D, T', H', W')."""

    def __init__(
        self, in_planes: int, inner: int, width: int, window: tuple[int, int, int]
    ) -> None:
        super().__init__()
        self.conv5 = nn.Conv3d(in_planes, inner, 1, bias=False)
        self.bn5 = nn.BatchNorm3d(inner)
        self.lin5 = nn.Conv3d(inner, width, 1, bias=False)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool3d(F.relu(self.bn5(self.conv5(x))), self.window, stride=1)
        return F.relu(self.lin5(x))


def average_position_scores(logits: torch.Tensor) -> torch.Tensor:
    """(N, P, K) logits of P window positions -> (N, K) scores whose softmax is the mean of the
    P softmaxes: log(mean_p softmax(z_p)) + logsumexp(z_1), written as
    z_1 + log(mean_p softmax(z_p)) - log softmax(z_1). With one position the last two terms are
    bit-identical, so the scores are the logits z_1 exactly; no branch on P (nothing for a
    tracer to freeze)."""
    log_probs = logits.log_softmax(dim=-1)
    peak = log_probs.amax(dim=1, keepdim=True)
    log_mean_probs = peak.squeeze(1) + (log_probs - peak).exp().mean(dim=1).log()
    return logits[:, 0] + (log_mean_probs - log_probs[:, 0])


# --------------------------------------------------------------------------- network


class X3DStyleNet(VideoClassifier):
    """The skeleton X3D and VoV3D share.

    clip (N, C, T, H, W)
      ↓ stem: 1×3×3 conv /(1,2,2), depthwise 5×1×1 conv, BN, ReLU        -> T × H/2 × W/2
      ↓ 4 stages, each halving H and W on its first block                  -> T × H/32 × W/32
      ↓ embedding: conv5, BN, ReLU, pool (T, ⌈crop/32⌉²) stride 1, lin5, ReLU -> P positions
      ↓ head: dropout, fc per position -> logits (N, K), averaged as probabilities if P > 1

    Subclasses build `stem`, `stages`, `embedding` (an `X3DEmbedding`) and `head`, sizing the
    window with `set_training_geometry`.
    """

    train_clip_len: int
    train_crop_size: int

    def set_training_geometry(self, frames: int, crop: int) -> tuple[int, int, int]:
        """Record the training clip length and crop; return the head's pooling window. Clips
        that give a map smaller than the window are refused, as the reference fails on them:
        the map side is ⌈side/32⌉ (five stride-2 convs with padding 1)."""
        self.train_clip_len, self.train_crop_size = frames, crop
        cells = math.ceil(crop / 32)
        self.min_frames, self.min_side = frames, 32 * (cells - 1) + 1
        return (frames, cells, cells)

    def forward_positions(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding at every window position, (N, P, D); P = 1 at the training geometry."""
        self.check_clip(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.embedding(x).flatten(2).transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding (N, D): lin5 features averaged over the window positions (exactly the
        head's input at the training geometry, where there is one position)."""
        return self.forward_positions(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return average_position_scores(self.head(self.forward_positions(x)))

    def forward_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward(x), forward_features(x)) from one pass. The logits are not
        forward_head(embedding) when the view has several window positions."""
        positions = self.forward_positions(x)
        return average_position_scores(self.head(positions)), positions.mean(dim=1)


class X3D(X3DStyleNet):
    """X3D built by the expansion rules of the reference builder: stem width 12 and stage
    widths 12/24/48/96 scaled by `width_factor` (rounded to multiples of 8), inner widths
    `bottleneck_factor` × stage width, stage depths 1/2/5/3 scaled by `depth_factor` (ceil)."""

    base_stem_width = 12
    base_widths = (12, 24, 48, 96)
    base_depths = (1, 2, 5, 3)

    def __init__(
        self,
        *,
        num_classes: int,
        depth_factor: float = 2.2,
        width_factor: float = 2.0,
        bottleneck_factor: float = 2.25,
        train_clip_len: int = 16,
        train_crop_size: int = 224,
        in_channels: int = 3,
        head_width: int = 2048,
        dropout: float = 0.5,
        stage1_shortcut_bn: bool = True,
    ) -> None:
        super().__init__(in_channels=in_channels, embedding_dim=head_width, num_classes=num_classes)
        window = self.set_training_geometry(train_clip_len, train_crop_size)
        arch = self.expand(depth_factor, width_factor, bottleneck_factor)
        self.stem = X3DStem(in_channels, arch["stem_width"])
        in_planes, stages = arch["stem_width"], []
        for index, (depth, width, inner) in enumerate(
            zip(arch["depths"], arch["widths"], arch["inner_widths"], strict=True)
        ):
            norm = stage1_shortcut_bn or index > 0
            blocks = [
                X3DBlock(
                    in_planes if b == 0 else width,
                    inner,
                    width,
                    stride=2 if b == 0 else 1,
                    use_se=b % 2 == 0,
                    shortcut=Projection(in_planes, width, norm=norm) if b == 0 else None,
                )
                for b in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            in_planes = width
        self.stages = nn.ModuleList(stages)
        self.embedding = X3DEmbedding(in_planes, arch["inner_widths"][-1], head_width, window)
        self.head = ClassifierHead(head_width, num_classes, dropout)

    @classmethod
    def expand(cls, depth_factor: float, width_factor: float, bottleneck_factor: float) -> dict:
        """Widths and depths of the expanded network."""
        widths = tuple(round_width(w, width_factor) for w in cls.base_widths)
        return {
            "stem_width": round_width(cls.base_stem_width, width_factor),
            "widths": widths,
            "inner_widths": tuple(int(bottleneck_factor * w) for w in widths),
            "depths": tuple(math.ceil(depth_factor * d) for d in cls.base_depths),
        }


# --------------------------------------------------------------------------- checkpoints

#: PySlowFast names of the stem, the shortcuts and the head, shared by X3D and VoV3D.
SLOWFAST_SKELETON = [
    (r"^s1\.pathway0_stem\.conv_xy\.", "stem.conv_s."),  # NOTE: conv_xy is the 1×3×3 conv
    (r"^s1\.pathway0_stem\.conv\.", "stem.conv_t."),
    (r"^s1\.pathway0_stem\.bn\.", "stem.bn."),
    (r"\.branch1\.", ".shortcut.conv."),
    (r"\.branch1_bn\.", ".shortcut.bn."),
    (r"^head\.conv_5\.", "embedding.conv5."),
    (r"^head\.conv_5_bn\.", "embedding.bn5."),
    (r"^head\.lin_5\.", "embedding.lin5."),
    (r"^head\.projection\.", "head.fc."),
]


def rename_slowfast_skeleton(key: str) -> str:
    """sN.pathway0_resI.* -> stages.(N-2).I.*, plus the `SLOWFAST_SKELETON` renames."""
    key = key.removeprefix("module.")
    key = re.sub(r"^s(\d)\.pathway0_res(\d+)\.", lambda m: f"stages.{int(m[1]) - 2}.{m[2]}.", key)
    for foreign, ours in SLOWFAST_SKELETON:
        key = re.sub(foreign, ours, key)
    return key


def convert_slowfast_x3d(key: str) -> str:
    """PySlowFast X3D keys -> ours.

    s1.pathway0_stem.conv_xy / conv / bn   -> stem.conv_s (1×3×3) / stem.conv_t (5×1×1) / stem.bn
    sN.pathway0_resI.*                     -> stages.(N-2).I.*
    ...branch1 / branch1_bn                -> ...shortcut.conv / shortcut.bn
    ...branch2.a / a_bn, b / b_bn, c / c_bn -> ...conv_a / bn_a, conv_b / bn_b, conv_c / bn_c
    ...branch2.se.fc1 / fc2                -> ...se.fc1 / se.fc2
    head.conv_5 / conv_5_bn / lin_5        -> embedding.conv5 / bn5 / lin5
    head.projection                        -> head.fc
    """
    key = rename_slowfast_skeleton(key)
    key = re.sub(r"\.branch2\.([abc])\.", r".conv_\1.", key)
    key = re.sub(r"\.branch2\.([abc])_bn\.", r".bn_\1.", key)
    return key.replace(".branch2.se.", ".se.")


PYTORCHVIDEO_NAMES = {
    "branch1_conv": "shortcut.conv",
    "branch1_norm": "shortcut.bn",
    "branch2.conv_a": "conv_a",
    "branch2.norm_a": "bn_a",
    "branch2.conv_b": "conv_b",
    "branch2.norm_b.0": "bn_b",
    "branch2.norm_b.1.block.0": "se.fc1",
    "branch2.norm_b.1.block.2": "se.fc2",
    "branch2.conv_c": "conv_c",
    "branch2.norm_c": "bn_c",
}


def convert_pytorchvideo_x3d(key: str) -> str:
    """pytorchvideo hub X3D keys -> ours.

    blocks.0.conv.conv_t / conv_xy / norm  -> stem.conv_s (1×3×3) / stem.conv_t (5×1×1) / stem.bn
    blocks.K.res_blocks.I.*  (K = 1..4)    -> stages.(K-1).I.*
    ...branch1_conv / branch1_norm         -> ...shortcut.conv / shortcut.bn
    ...branch2.conv_a / norm_a, conv_b / norm_b.0, conv_c / norm_c -> ...conv_a / bn_a, ...
    ...branch2.norm_b.1.block.0 / .2 (SE)  -> ...se.fc1 / se.fc2
    blocks.5.pool.pre_conv / pre_norm / post_conv -> embedding.conv5 / bn5 / lin5
    blocks.5.proj                          -> head.fc
    """
    key = key.removeprefix("module.")
    # NOTE: pytorchvideo names the spatial 1×3×3 conv conv_t and the temporal one conv_xy.
    stem = {"conv.conv_t": "conv_s", "conv.conv_xy": "conv_t", "norm": "bn"}
    head = {"pool.pre_conv": "conv5", "pool.pre_norm": "bn5", "pool.post_conv": "lin5"}
    module, _, tensor = key.rpartition(".")
    if module.startswith("blocks.0."):
        module = "stem." + stem.get(module.removeprefix("blocks.0."), module)
    elif module == "blocks.5.proj":
        module = "head.fc"
    elif module.startswith("blocks.5."):
        module = "embedding." + head.get(module.removeprefix("blocks.5."), module)
    elif match := re.match(r"^blocks\.(\d)\.res_blocks\.(\d+)\.(.+)$", module):
        stage, block, rest = int(match[1]) - 1, match[2], match[3]
        module = f"stages.{stage}.{block}.{PYTORCHVIDEO_NAMES.get(rest, rest)}"
    return f"{module}.{tensor}"


def count_blocks(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many distinct block indices the group `(\\d+)` of `pattern` takes in the keys."""
    return len({m[1] for k in state_dict if (m := re.match(pattern, k))})


def _identify_x3d(
    sd: Mapping[str, torch.Tensor],
    *,
    found: dict,
    stem: str,
    lin5: str,
    projection: str,
    stage1_shortcut_bn: bool,
) -> Identified:
    """Match the file's widths and depths (`found`, as `X3D.expand` gives them) against the
    expansion of each registered variant."""
    expansions = {
        name: X3D.expand(
            cfg["depth_factor"], cfg.get("width_factor", 2.0), cfg.get("bottleneck_factor", 2.25)
        )
        for name, cfg in model_cfgs.items()
    }
    names = [name for name, arch in expansions.items() if arch == found]
    if not names:
        raise UnrecognisedCheckpointError(
            f"the file holds an X3D with stem width {found['stem_width']}, stage widths "
            f"{found['widths']}, inner widths {found['inner_widths']} and blocks "
            f"{found['depths']}; registered: "
            + "; ".join(f"{n} blocks {a['depths']}" for n, a in expansions.items())
        )
    # XS, S and M share the M network: the file is read as the last (largest) of them.
    return Identified(
        model=names[-1],
        num_classes=sd[projection].shape[0],
        variant={
            "in_channels": sd[stem].shape[1],
            "head_width": sd[lin5].shape[0],
            "stage1_shortcut_bn": stage1_shortcut_bn,
        },
        alternatives=tuple(names[:-1]),
    )


def _unprefixed(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def _identify_slowfast_x3d(state_dict: Mapping[str, torch.Tensor]) -> Identified:
    sd = _unprefixed(state_dict)
    first = [f"s{n}.pathway0_res0.branch2" for n in range(2, 6)]
    found = {
        "stem_width": sd["s1.pathway0_stem.conv_xy.weight"].shape[0],
        "widths": tuple(sd[f"{b}.c.weight"].shape[0] for b in first),
        "inner_widths": tuple(sd[f"{b}.a.weight"].shape[0] for b in first),
        "depths": tuple(count_blocks(sd, rf"s{n}\.pathway0_res(\d+)\.") for n in range(2, 6)),
    }
    return _identify_x3d(
        sd,
        found=found,
        stem="s1.pathway0_stem.conv_xy.weight",
        lin5="head.lin_5.weight",
        projection="head.projection.weight",
        stage1_shortcut_bn="s2.pathway0_res0.branch1_bn.weight" in sd,
    )


def _identify_pytorchvideo_x3d(state_dict: Mapping[str, torch.Tensor]) -> Identified:
    sd = _unprefixed(state_dict)
    first = [f"blocks.{n}.res_blocks.0.branch2" for n in range(1, 5)]
    found = {
        "stem_width": sd["blocks.0.conv.conv_t.weight"].shape[0],
        "widths": tuple(sd[f"{b}.conv_c.weight"].shape[0] for b in first),
        "inner_widths": tuple(sd[f"{b}.conv_a.weight"].shape[0] for b in first),
        "depths": tuple(
            count_blocks(sd, rf"blocks\.{n}\.res_blocks\.(\d+)\.") for n in range(1, 5)
        ),
    }
    return _identify_x3d(
        sd,
        found=found,
        stem="blocks.0.conv.conv_t.weight",
        lin5="blocks.5.pool.post_conv.weight",
        projection="blocks.5.proj.weight",
        stage1_shortcut_bn="blocks.1.res_blocks.0.branch1_norm.weight" in sd,
    )


def is_slowfast_x3d(state_dict: Mapping[str, torch.Tensor]) -> bool:
    keys = _unprefixed(state_dict)
    return "s1.pathway0_stem.conv_xy.weight" in keys and "s2.pathway0_res0.branch2.b.weight" in keys


def is_pytorchvideo_x3d(state_dict: Mapping[str, torch.Tensor]) -> bool:
    keys = _unprefixed(state_dict)
    return (
        "blocks.0.conv.conv_t.weight" in keys
        and "blocks.0.conv.conv_xy.weight" in keys
        and "blocks.1.res_blocks.0.branch2.norm_b.0.weight" in keys
    )


register_layout(
    CheckpointLayout(
        name="slowfast_x3d",
        description="PySlowFast model zoo (x3d_xs/s/m/l.pyth): {'model_state', 'epoch', "
        "'optimizer_state', 'cfg'}, keys s1.pathway0_stem.*, sN.pathway0_resI.*, head.*",
        recipe=x3d_recipe,
        label_sets={400: "kinetics400"},
        matches=is_slowfast_x3d,
        identify=_identify_slowfast_x3d,
        convert_key=convert_slowfast_x3d,
    )
)
register_layout(
    CheckpointLayout(
        name="pytorchvideo_x3d",
        description="pytorchvideo hub (X3D_XS/S/M/L.pyth): {'model_state'}, keys blocks.N.*, "
        "stem conv names swapped, no BN on the first stage's shortcut",
        recipe=x3d_recipe,
        label_sets={400: "kinetics400"},
        matches=is_pytorchvideo_x3d,
        identify=_identify_pytorchvideo_x3d,
        convert_key=convert_pytorchvideo_x3d,
    )
)


# --------------------------------------------------------------------------- variants

model_cfgs: dict[str, dict] = {
    # name     depth factor      training geometry (frames × crop), which sizes the head's window
    "x3d_xs": dict(depth_factor=2.2, train_clip_len=4, train_crop_size=160),
    "x3d_s": dict(depth_factor=2.2, train_clip_len=13, train_crop_size=160),
    "x3d_m": dict(depth_factor=2.2, train_clip_len=16, train_crop_size=224),
    "x3d_l": dict(depth_factor=5.0, train_clip_len=16, train_crop_size=312),
}


def _create_x3d(variant: str, **kwargs: object) -> X3D:
    return X3D(**{**model_cfgs[variant], **kwargs})


# --------------------------------------------------------------------------- registered models
# Kinetics-400 weights of the PySlowFast and pytorchvideo zoos; pass stage1_shortcut_bn=False
# for pytorchvideo's (load_checkpoint reads it off the file).


@register_model(recipe=x3d_recipe, label_set="kinetics400")
def x3d_xs(**kwargs: object) -> X3D:
    return _create_x3d("x3d_xs", **kwargs)


@register_model(recipe=x3d_recipe, label_set="kinetics400")
def x3d_s(**kwargs: object) -> X3D:
    return _create_x3d("x3d_s", **kwargs)


@register_model(recipe=x3d_recipe, label_set="kinetics400")
def x3d_m(**kwargs: object) -> X3D:
    return _create_x3d("x3d_m", **kwargs)


@register_model(recipe=x3d_recipe, label_set="kinetics400")
def x3d_l(**kwargs: object) -> X3D:
    return _create_x3d("x3d_l", **kwargs)
