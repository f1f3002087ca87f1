"""VoV3D: temporal one-shot aggregation (T-OSA) of depthwise (2+1)D layers on the X3D skeleton.

Lee, Kim, Yun, Moon, "Diverse Temporal Aggregation and Depthwise Spatiotemporal Factorization
for Efficient Video Classification", arXiv 2012.00317. Reference code: youngwanLEE/VoV3D
(bc62cac / df9cc7b, on PySlowFast 287ec00 helpers): `vov3d_model_builder.VoV3D`,
`vov3d_helper.py`, `configs/{Kinetics,SSv2}/vov3d/*.yaml`.

The stem, the stage shortcuts and the fully convolutional head are X3D's (see x3d.py, which
also explains how views larger than the training crop are scored). Each block's residual
branch is a T-OSA module: five D(2+1)D layers in series whose outputs (and the block input,
when the block keeps the resolution) are concatenated and fused by a 1×1×1 conv. Stacked 3×1×1
temporal convs give the concatenated features temporal receptive fields of 3, 5, 7, 9 and 11
frames. The configs' TEMPORAL_DILATIONS value is ignored by the reference and has no
counterpart here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from backbones.checkpoints import CheckpointLayout, Identified, register_layout
from backbones.errors import UnrecognisedCheckpointError
from backbones.layers import ClassifierHead, VideoClassifier
from backbones.registry import register_model
from backbones.x3d import (
    Projection,
    SqueezeExcitation,
    X3DEmbedding,
    X3DStem,
    X3DStyleNet,
    count_blocks,
    rename_slowfast_skeleton,
    slowfast_recipe,
)
from model_store.spec import Recipe, Sampling

__all__ = ["VoV3D", "vov3d_recipe"]


def vov3d_recipe(model: VideoClassifier) -> Recipe:
    """Kinetics-400 for 400 classes; Something-Something (174 classes) otherwise."""
    frames, crop = model.train_clip_len, model.train_crop_size
    test_crop = 256 if crop == 224 else crop
    if model.num_classes == 174:
        return slowfast_recipe(
            sampling=Sampling.SLOWFAST_SEGMENTS,
            clip_len=frames,
            frame_interval=1,
            num_clips=1,
            train_crop=crop,
            test_crop=test_crop,
            backend="pyav",
            source=f"VoV3D configs/SSv2/vov3d/vov3d_*_F{frames}.yaml and datasets/ssv2.py: "
            f"{frames} frames, the middle of each of {frames} segments of (n - 1)/{frames} "
            "frames (test mode with one clip; the 2-clip setting draws random frames and "
            f"cannot be reproduced), short side {test_crop} with torch bilinear "
            f"(random_short_side_scale_jitter), 3 crops (uniform_crop); trained at {crop}. "
            "Frames are read BGR by cv2 and REVERSE_INPUT_CHANNEL turns them back: the network "
            "sees RGB [0, 1], mean 0.45, std 0.225. The SSv1 weights have the same recipe and "
            "174 classes (pass label_set='something-something-v1').",
        )
    return slowfast_recipe(
        clip_len=frames,
        frame_interval=5,
        train_crop=crop,
        test_crop=test_crop,
        backend="pyav",
        source=f"VoV3D configs/Kinetics/vov3d/vov3d_{{M,L}}.yaml (DECODING_BACKEND pyav): "
        "datasets/decoder.py decode (span 5·16/30·fps, clip i of 10 at delta·i/10, "
        f"linspace clamped), frames resized to short side {test_crop} on floats by "
        "transform.random_short_side_scale_jitter (torch bilinear, long side floored), "
        "uniform_crop (ceil offsets, 3 crops); RGB [0, 1], mean 0.45, std 0.225. Trained at "
        f"{crop}: views larger than that are scored fully convolutionally.",
    )


# --------------------------------------------------------------------------- blocks


class D2plus1DLayer(nn.Module):
    """1×1×1 -> BN -> ReLU -> depthwise 1×3×3 (spatial stride) -> depthwise 3×1×1 -> BN
    -> [SE] -> Swish -> 1×1×1 to inner/2 -> BN, [+ input], ReLU.

    The input is added when the layer keeps width and resolution; the ReLU applies either way.
    """

    def __init__(self, in_planes: int, inner: int, *, stride: int = 1, use_se: bool) -> None:
        super().__init__()
        out_planes = inner // 2
        self.conv_a = nn.Conv3d(in_planes, inner, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(inner)
        self.conv_s = nn.Conv3d(
            inner,
            inner,
            (1, 3, 3),
            stride=(1, stride, stride),
            padding=(0, 1, 1),
            groups=inner,
            bias=False,
        )
        self.conv_t = nn.Conv3d(
            inner, inner, (3, 1, 1), padding=(1, 0, 0), groups=inner, bias=False
        )
        self.bn_st = nn.BatchNorm3d(inner)  # one BN after both depthwise convs
        self.se = SqueezeExcitation(inner) if use_se else nn.Identity()
        self.conv_c = nn.Conv3d(inner, out_planes, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(out_planes)
        self.residual = in_planes == out_planes and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_st(self.conv_t(self.conv_s(out)))
        out = self.bn_c(self.conv_c(F.silu(self.se(out))))
        return F.relu(out + x) if self.residual else F.relu(out)


class TOSABlock(nn.Module):
    """T-OSA residual block: D(2+1)D layers in series (the first carries the stride; SE on the
    even ones), concatenate [input if stride 1, every layer's output] on channels, 1×1×1 conv
    -> BN to the block width, + shortcut, ReLU."""

    def __init__(
        self,
        in_planes: int,
        inner: int,
        out_planes: int,
        *,
        num_layers: int,
        stride: int = 1,
        shortcut: nn.Module | None = None,
    ) -> None:
        super().__init__()
        layer_out = inner // 2
        self.layers = nn.ModuleList(
            D2plus1DLayer(
                in_planes if j == 0 else layer_out,
                inner,
                stride=stride if j == 0 else 1,
                use_se=j % 2 == 0,
            )
            for j in range(num_layers)
        )
        # NOTE: a strided block cannot concatenate its input (other resolution).
        self.keep_input = stride == 1
        concat = num_layers * layer_out + (in_planes if self.keep_input else 0)
        self.conv_agg = nn.Conv3d(concat, out_planes, 1, bias=False)
        self.bn_agg = nn.BatchNorm3d(out_planes)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x] if self.keep_input else []
        out = x
        for layer in self.layers:
            out = layer(out)
            features.append(out)
        out = self.bn_agg(self.conv_agg(torch.cat(features, dim=1)))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


# --------------------------------------------------------------------------- network


class VoV3D(X3DStyleNet):
    """VoV3D: X3D stem (width inner_channels/2), four stages of T-OSA blocks with widths
    inner_channels × 0.5/1/2/4 and D(2+1)D inner widths × 1/2/4/8, X3D head."""

    def __init__(
        self,
        *,
        num_classes: int,
        depths: tuple[int, int, int, int] = (1, 2, 3, 2),
        inner_channels: int = 40,
        num_layers: int = 5,
        train_clip_len: int = 16,
        train_crop_size: int = 224,
        in_channels: int = 3,
        head_width: int = 2048,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(in_channels=in_channels, embedding_dim=head_width, num_classes=num_classes)
        window = self.set_training_geometry(train_clip_len, train_crop_size)
        widths = [int(inner_channels * m) for m in (0.5, 1, 2, 4)]
        inners = [int(inner_channels * m) for m in (1, 2, 4, 8)]
        self.stem = X3DStem(in_channels, inner_channels // 2)
        in_planes, stages = inner_channels // 2, []
        for depth, width, inner in zip(depths, widths, inners, strict=True):
            blocks = [
                TOSABlock(
                    in_planes if b == 0 else width,
                    inner,
                    width,
                    num_layers=num_layers,
                    stride=2 if b == 0 else 1,
                    shortcut=Projection(in_planes, width) if b == 0 else None,
                )
                for b in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            in_planes = width
        self.stages = nn.ModuleList(stages)
        self.embedding = X3DEmbedding(in_planes, inners[-1], head_width, window)
        self.head = ClassifierHead(head_width, num_classes, dropout)


# --------------------------------------------------------------------------- checkpoints


def convert_slowfast_vov3d(key: str) -> str:
    """VoV3D (PySlowFast layout) keys -> ours.

    s1.pathway0_stem.conv_xy / conv / bn   -> stem.conv_s (1×3×3) / stem.conv_t (5×1×1) / stem.bn
    sN.pathway0_resI.*                     -> stages.(N-2).I.*
    ...branch1 / branch1_bn                -> ...shortcut.conv / shortcut.bn
    ...branch2.layers.J.a.0 / a.1          -> ...layers.J.conv_a / bn_a
    ...branch2.layers.J.b1 / b2 / b_bn     -> ...layers.J.conv_s / conv_t / bn_st
    ...branch2.layers.J.se.fc1 / fc2       -> ...layers.J.se.fc1 / se.fc2
    ...branch2.layers.J.c.0 / c.1          -> ...layers.J.conv_c / bn_c
    ...branch2.c / c_bn                    -> ...conv_agg / bn_agg
    head.conv_5 / conv_5_bn / lin_5        -> embedding.conv5 / bn5 / lin5
    head.projection                        -> head.fc
    """
    key = rename_slowfast_skeleton(key)
    layer = {"a.0": "conv_a", "a.1": "bn_a", "b1": "conv_s", "b2": "conv_t", "b_bn": "bn_st"}
    layer |= {"c.0": "conv_c", "c.1": "bn_c", "se.fc1": "se.fc1", "se.fc2": "se.fc2"}
    key = re.sub(
        r"\.branch2\.layers\.(\d+)\.(.+)\.(\w+)$",
        lambda m: f".layers.{m[1]}.{layer.get(m[2], m[2])}.{m[3]}",
        key,
    )
    return key.replace(".branch2.c.", ".conv_agg.").replace(".branch2.c_bn.", ".bn_agg.")


def _identify_vov3d(state_dict: Mapping[str, torch.Tensor]) -> Identified:
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    depths = tuple(count_blocks(sd, rf"s{n}\.pathway0_res(\d+)\.") for n in range(2, 6))
    name = next((n for n, cfg in model_cfgs.items() if cfg["depths"] == depths), None)
    if name is None:
        raise UnrecognisedCheckpointError(
            f"the file holds a VoV3D with blocks {depths}; registered: "
            + ", ".join(f"{n} {c['depths']}" for n, c in model_cfgs.items())
        )
    return Identified(
        model=name,
        num_classes=sd["head.projection.weight"].shape[0],
        variant={
            "in_channels": sd["s1.pathway0_stem.conv_xy.weight"].shape[1],
            "inner_channels": sd["s2.pathway0_res0.branch2.layers.0.a.0.weight"].shape[0],
            "num_layers": count_blocks(sd, r"s2\.pathway0_res0\.branch2\.layers\.(\d+)\."),
            "head_width": sd["head.lin_5.weight"].shape[0],
        },
    )


def is_slowfast_vov3d(state_dict: Mapping[str, torch.Tensor]) -> bool:
    keys = {k.removeprefix("module.") for k in state_dict}
    return (
        "s1.pathway0_stem.conv_xy.weight" in keys
        and "s2.pathway0_res0.branch2.layers.0.b1.weight" in keys
    )


register_layout(
    CheckpointLayout(
        name="slowfast_vov3d",
        description="youngwanLEE/VoV3D (vov3d_M/L_k400, *_ssv1, *_ssv2 .pth): PySlowFast "
        "{'model_state'}, keys s1.pathway0_stem.*, sN.pathway0_resI.branch2.layers.J.*, head.*",
        recipe=vov3d_recipe,
        label_sets={400: "kinetics400", 174: "something-something-v2"},
        matches=is_slowfast_vov3d,
        identify=_identify_vov3d,
        convert_key=convert_slowfast_vov3d,
    )
)


# --------------------------------------------------------------------------- variants

model_cfgs: dict[str, dict] = {
    # name        blocks per stage   inner_ch (stem width × 2)
    "vov3d_m": dict(depths=(1, 2, 3, 2), inner_channels=40),
    "vov3d_l": dict(depths=(1, 2, 5, 3), inner_channels=48),
}


def _create_vov3d(variant: str, **kwargs: object) -> VoV3D:
    return VoV3D(**{**model_cfgs[variant], **kwargs})


# --------------------------------------------------------------------------- registered models
# num_classes=174 gives the Something-Something recipe (segments, BGR, 2 clips × 3 crops);
# pass train_clip_len=32 for the 32-frame SSv1/SSv2 weights (the tensors cannot tell).


@register_model(recipe=vov3d_recipe, label_set="kinetics400")
def vov3d_m(**kwargs: object) -> VoV3D:
    return _create_vov3d("vov3d_m", **kwargs)


@register_model(recipe=vov3d_recipe, label_set="kinetics400")
def vov3d_l(**kwargs: object) -> VoV3D:
    return _create_vov3d("vov3d_l", **kwargs)
