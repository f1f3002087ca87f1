"""Pseudo-3D ResNet: P3D-A, -B, -C and the mixed A→B→C network (P3D-63/131/199).

Qiu, Yao, Mei, "Learning Spatio-Temporal Representation with Pseudo-3D Residual Networks",
ICCV 2017. Official Caffe prototxts: ZhaofanQiu/pseudo-3d-residual-networks (e91f95d). The
public PyTorch weights are converted from Caffe by the qijiezhao/pseudo-3d-pytorch port
(09bba23), whose forward differs from the Caffe graph in three places; both are offered:

    semantics  block B                              block C                       pool1
    "port"     ReLU(BN(S x)) + ReLU(BN(T x))        s + ReLU(BN(T s))             pad (0,1,1), floor
    "caffe"    ReLU(ReLU(BN(S x)) + BN(T x))        ReLU(0.5 s + 0.5 BN(T s))     pad 0, ceil

(s = ReLU(BN(S x)); S = 1×3×3 spatial conv, T = 3×1×1 temporal conv; A = T after S in both.)

res2..res4 are P3D stages; res5 is a 2-D ResNet stage. The port views the res4 output as
(N, C, H, W) and needs T = 1 there (16 input frames) and AvgPool2d(5) (160×160 input). Here
res5 runs on each remaining frame and the head pools globally over (T, H, W): the same numbers
at 16×160×160, no silent mixing of batch and time at other sizes; fewer than 16 frames are
refused.
"""

from __future__ import annotations

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
from model_store.spec import ChannelOrder, Recipe, ResizeFilter, WindowTail

__all__ = ["P3D", "P3D_RGB_RECIPE"]

Semantics = Literal["port", "caffe"]

P3D_RGB_RECIPE = Recipe(
    clip_len=16,
    frame_interval=1,
    num_clips=10,
    window_tail=WindowTail.END,
    num_crops=1,
    short_side=182,
    crop_size=160,
    stretch_to=(182, 242),
    resize_filter=ResizeFilter.CV2_LINEAR,
    pixel_scale=255.0,
    mean=(104.0, 117.0, 123.0),
    std=(1.0, 1.0, 1.0),
    channel_order=ChannelOrder.BGR,
    source=(
        "P3D paper (ICCV 2017) and the Caffe release's README (ZhaofanQiu/pseudo-3d-residual-"
        "networks): 16 consecutive frames, each resized to 182×242 without keeping the aspect "
        "(Caffe's cv::resize, bilinear), centre crop 160 (Caffe's (L - 160) / 2), 0..255 minus "
        "the per-channel mean [104, 117, 123] in Caffe's BGR order, no std. No test script "
        "is public: the 10 evenly spread clips (mmaction2's rule) are actserve's choice. "
        "Unverified for the converted port weights (the port's author said RGB)."
    ),
)


# --------------------------------------------------------------------------- blocks


class P3DBlock(nn.Module):
    """A P3D bottleneck: 1×1×1 -> BN -> ReLU -> [S/T arranged as A, B or C] -> 1×1×1 (×4)
    -> BN, + shortcut, ReLU."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        block_type: Literal["A", "B", "C"],
        semantics: Semantics,
        stride: tuple[int, int, int] = (1, 1, 1),
        shortcut: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if block_type not in ("A", "B", "C"):
            raise ValueError(f"P3D block type must be A, B or C, got {block_type!r}")
        self.block_type, self.semantics = block_type, semantics
        self.conv_reduce = nn.Conv3d(in_planes, planes, 1, stride=stride, bias=False)
        self.bn_reduce = nn.BatchNorm3d(planes)
        self.conv_s = nn.Conv3d(planes, planes, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn_s = nn.BatchNorm3d(planes)
        self.conv_t = nn.Conv3d(planes, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.bn_t = nn.BatchNorm3d(planes)
        self.conv_expand = nn.Conv3d(planes, planes * self.expansion, 1, bias=False)
        self.bn_expand = nn.BatchNorm3d(planes * self.expansion)
        self.shortcut = shortcut

    def spatio_temporal(self, x: torch.Tensor) -> torch.Tensor:
        caffe = self.semantics == "caffe"
        if self.block_type == "A":
            s = F.relu(self.bn_s(self.conv_s(x)))
            return F.relu(self.bn_t(self.conv_t(s)))
        if self.block_type == "B":
            s = F.relu(self.bn_s(self.conv_s(x)))
            t = self.bn_t(self.conv_t(x))
            # NOTE: Caffe sums the unrectified T branch and rectifies the sum; the port
            # rectifies each branch and not the sum.
            return F.relu(s + t) if caffe else s + F.relu(t)
        s = F.relu(self.bn_s(self.conv_s(x)))
        t = self.bn_t(self.conv_t(s))
        # NOTE: Caffe's C is an Eltwise with coefficients 0.5/0.5 followed by a ReLU.
        return F.relu(0.5 * s + 0.5 * t) if caffe else s + F.relu(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = self.bn_expand(self.conv_expand(self.spatio_temporal(out)))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class Bottleneck2d(nn.Module):
    """The 2-D ResNet bottleneck of res5: 1×1 (stride) -> 3×3 -> 1×1 (×4), + shortcut, ReLU."""

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, *, stride: int = 1, shortcut: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
        self.bn_reduce = nn.BatchNorm2d(planes)
        self.conv_mid = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn_mid = nn.BatchNorm2d(planes)
        self.conv_expand = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn_mid(self.conv_mid(out)))
        out = self.bn_expand(self.conv_expand(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class Projection(nn.Module):
    """1×1(×1) conv carrying the stride, then BN: the shortcut of a stage's first block."""

    def __init__(self, in_planes: int, out_planes: int, stride: int | tuple, dims: int) -> None:
        super().__init__()
        conv, norm = (nn.Conv3d, nn.BatchNorm3d) if dims == 3 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv = conv(in_planes, out_planes, 1, stride=stride, bias=False)
        self.bn = norm(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class P3DStem(nn.Module):
    """conv 1×7×7 /(1,2,2) -> BN -> ReLU -> max pool (2,3,3)/2."""

    def __init__(self, in_channels: int, semantics: Semantics) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
        )
        self.bn = nn.BatchNorm3d(64)
        if semantics == "caffe":
            self.pool = nn.MaxPool3d((2, 3, 3), stride=2, padding=0, ceil_mode=True)
        else:
            self.pool = nn.MaxPool3d((2, 3, 3), stride=2, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))


# --------------------------------------------------------------------------- network


class P3D(VideoClassifier):
    """Pseudo-3D ResNet.

    clip (N, C, 16, 160, 160)
      ↓ stem: conv 1×7×7 /(1,2,2), BN, ReLU, max pool (2,3,3)/2       -> 64 × 8×40×40
      ↓ res2, res3, res4: P3D blocks (types cycle A→B→C over all of them),
        each stage followed by a temporal max pool (2,1,1)/(2,1,1)      -> 1024 × 1×10×10
      ↓ res5: 2-D bottlenecks on every remaining frame                  -> 2048 × 1×5×5
      ↓ global average pool over (T, H, W) -> embedding (N, 2048)
      ↓ head: dropout, fc -> logits (N, K)
    """

    min_frames = 16
    min_side = 32

    def __init__(
        self,
        *,
        num_classes: int,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        block_types: str = "ABC",
        semantics: Semantics = "port",
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(in_channels=in_channels, embedding_dim=2048, num_classes=num_classes)
        if semantics not in ("port", "caffe"):
            raise ValueError(f"semantics must be 'port' or 'caffe', got {semantics!r}")
        if not block_types or set(block_types) - set("ABC"):
            raise ValueError(f"block_types must be letters of 'ABC', got {block_types!r}")
        self.block_types, self.semantics = block_types, semantics
        self.stem = P3DStem(in_channels, semantics)
        in_planes, counter, stages = 64, 0, []
        for index, (depth, planes) in enumerate(zip(layers[:3], (64, 128, 256), strict=True)):
            # The first block of res3/res4 strides (1,2,2) on its first 1×1×1 conv and on the
            # projection; res2's first block only projects 64 -> 256.
            stride = (1, 1, 1) if index == 0 else (1, 2, 2)
            blocks = []
            for b in range(depth):
                blocks.append(
                    P3DBlock(
                        in_planes,
                        planes,
                        block_type=block_types[counter % len(block_types)],
                        semantics=semantics,
                        stride=stride if b == 0 else (1, 1, 1),
                        shortcut=Projection(in_planes, planes * 4, stride, dims=3)
                        if b == 0
                        else None,
                    )
                )
                in_planes, counter = planes * 4, counter + 1
            stages.append(nn.Sequential(*blocks))
        res5 = [Bottleneck2d(in_planes, 512, stride=2, shortcut=Projection(in_planes, 2048, 2, 2))]
        res5 += [Bottleneck2d(2048, 512) for _ in range(layers[3] - 1)]
        stages.append(nn.Sequential(*res5))
        self.stages = nn.ModuleList(stages)
        self.temporal_pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        self.head = ClassifierHead(2048, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_clip(x)
        x = self.stem(x)
        for stage in self.stages[:3]:
            x = self.temporal_pool(stage(x))
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        frames = self.stages[3](frames)
        return frames.reshape(n, t, frames.shape[1], -1).mean(dim=(1, 3))


# --------------------------------------------------------------------------- checkpoints


def convert_p3d_port(key: str) -> str:
    """qijiezhao/pseudo-3d-pytorch keys -> ours.

    conv1_custom / bn1                  -> stem.conv / stem.bn
    layerL.i.*                          -> stages.(L-1).i.*
    ...downsample.0 / .1                -> ...shortcut.conv / .bn
    ...conv1 / bn1 (1×1×1 reduce)       -> ...conv_reduce / bn_reduce
    ...conv2 / bn2 (S, 1×3×3)           -> ...conv_s / bn_s
    ...conv3 / bn3 (T, 3×1×1)           -> ...conv_t / bn_t
    ...conv_normal / bn_normal (res5)   -> ...conv_mid / bn_mid
    ...conv4 / bn4 (1×1×1 expand)       -> ...conv_expand / bn_expand
    fc                                  -> head.fc
    """
    key = key.removeprefix("module.")
    key = re.sub(r"^conv1_custom\.", "stem.conv.", key)
    key = re.sub(r"^bn1\.", "stem.bn.", key)
    key = re.sub(r"^fc\.", "head.fc.", key)
    match = re.match(r"^layer(\d)\.(\d+)\.(.+)$", key)
    if match is None:
        return key
    stage, block, rest = int(match[1]) - 1, match[2], match[3]
    renames = {
        "downsample.0": "shortcut.conv",
        "downsample.1": "shortcut.bn",
        "conv1": "conv_reduce",
        "bn1": "bn_reduce",
        "conv2": "conv_s",
        "bn2": "bn_s",
        "conv3": "conv_t",
        "bn3": "bn_t",
        "conv_normal": "conv_mid",
        "bn_normal": "bn_mid",
        "conv4": "conv_expand",
        "bn4": "bn_expand",
    }
    module, _, tensor = rest.rpartition(".")
    return f"stages.{stage}.{block}.{renames.get(module, module)}.{tensor}"


def _identify_p3d(state_dict: Mapping[str, torch.Tensor]) -> Identified:
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    layers = tuple(
        len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5)
    )
    name = next((n for n, cfg in model_cfgs.items() if cfg["layers"] == layers), None)
    if name is None:
        raise UnrecognisedCheckpointError(
            f"the file holds a P3D ResNet with blocks {layers}; registered depths: "
            + ", ".join(f"{n} {c['layers']}" for n, c in model_cfgs.items())
        )
    return Identified(
        model=name,
        num_classes=sd["fc.weight"].shape[0],
        variant={"in_channels": sd["conv1_custom.weight"].shape[1]},
    )


def _p3d_recipe(model: VideoClassifier) -> Recipe:
    if model.in_channels == 3:
        return P3D_RGB_RECIPE
    if model.in_channels % 2:
        raise ValueError(
            f"P3D reads 3 colour channels or 2 per flow field, not {model.in_channels}"
        )
    # Optical flow: TV-L1 x/y as 8-bit images centred on 128, as the Caffe flow nets read it.
    return P3D_RGB_RECIPE.as_flow(
        frames_per_stack=model.in_channels // 2,
        source=(
            "P3D Caffe README: TV-L1 flow, x and y merged as a two-channel grey-level image, "
            "mean 128; 16 flow fields from 17 consecutive frames (182 short side, 160 crop). "
            "Bound 20 px: dense_flow's default (the README does not say)."
        ),
    )


register_layout(
    CheckpointLayout(
        name="p3d_port",
        description="qijiezhao/pseudo-3d-pytorch (p3d_rgb_199 / p3d_flow_199 "
        ".checkpoint.pth.tar): {'state_dict'}, conv1_custom, conv_normal, no num_batches_tracked",
        recipe=_p3d_recipe,
        label_sets={400: "kinetics400"},
        matches=lambda sd: any(k.removeprefix("module.") == "conv1_custom.weight" for k in sd),
        identify=_identify_p3d,
        convert_key=convert_p3d_port,
    )
)


# --------------------------------------------------------------------------- variants

model_cfgs: dict[str, dict] = {
    # name       blocks in res2..res5 (the ResNet-50/101/152 layouts)
    "p3d_63": dict(layers=(3, 4, 6, 3)),
    "p3d_131": dict(layers=(3, 4, 23, 3)),
    "p3d_199": dict(layers=(3, 8, 36, 3)),
}


def _create_p3d(variant: str, **kwargs: object) -> P3D:
    return P3D(**{**model_cfgs[variant], **kwargs})


# --------------------------------------------------------------------------- registered models
# block_types="ABC" (default) is the mixed P3D ResNet; "A", "B" or "C" builds the pure nets.
# semantics="port" runs the public converted weights as their users do; "caffe" follows the
# original prototxt. in_channels=2 builds the optical-flow stem.


@register_model(recipe=_p3d_recipe, label_set="kinetics400")
def p3d_63(**kwargs: object) -> P3D:
    return _create_p3d("p3d_63", **kwargs)


@register_model(recipe=_p3d_recipe, label_set="kinetics400")
def p3d_131(**kwargs: object) -> P3D:
    return _create_p3d("p3d_131", **kwargs)


@register_model(recipe=_p3d_recipe, label_set="kinetics400")
def p3d_199(**kwargs: object) -> P3D:
    return _create_p3d("p3d_199", **kwargs)
