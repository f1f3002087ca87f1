"""3D ResNets: ResNet-10…200, pre-activation, Wide ResNet, ResNeXt and R(2+1)D.

Hara, Kataoka, Satoh, "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and
ImageNet?", CVPR 2018. Reference code: kenshohara/3D-ResNets-PyTorch, branch CVPR2018
(d9847ea, the old Kinetics-400 checkpoints) and master (540a0ea, the 2020 r3d*_K/KM/...
checkpoints). R(2+1)D follows Tran et al., CVPR 2018, in the master branch's
parameter-matched layout.

Both code generations compute the same network; they differ in key names (`module.` prefix,
`num_batches_tracked`), the head pool (a fixed AvgPool3d sized for 16×112 in 2018, an adaptive
one in 2020: equal at 16×112, so adaptive pooling is used throughout), the Wide ResNet stem
width, and the input normalisation the weights were trained with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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
    PreScale,
    Recipe,
    ResizeFilter,
    Sampling,
    SizeRounding,
    WindowTail,
)

__all__ = ["HARA2018_RECIPE", "HARA2020_RECIPE", "ResNet3d", "Stem"]

HARA2018_RECIPE = Recipe(
    sampling=Sampling.SLIDING,
    clip_len=16,
    frame_interval=1,
    num_clips=1,
    window_tail=WindowTail.LOOP_UNLESS_ONE,
    num_crops=1,
    short_side=112,
    crop_size=112,
    prescale=PreScale(size=240, side="height"),
    resize_filter=ResizeFilter.PIL_BILINEAR,
    size_rounding=SizeRounding.TRUNCATE,
    crop_rule=CropRule.ROUND,
    pixel_scale=255.0,
    mean=(114.7748, 107.7354, 99.4750),
    std=(1.0, 1.0, 1.0),
    source=(
        "3D-ResNets-PyTorch CVPR2018 branch: frames extracted by utils/video_jpg_kinetics.py "
        "(ffmpeg -vf scale=-1:240); main.py test pipeline Scale(112) (PIL bilinear, long side "
        "int(112·h/w)), CornerCrop(112, 'c') (round((L-112)/2)), ToTensor(norm_value=1) minus "
        "the ActivityNet mean, no std; datasets/kinetics.py make_dataset with "
        "n_samples_for_each_video=0: windows of 16 frames at range(1, n_frames, 16), "
        "LoopPadding(16); test.py averages the softmax over the windows."
    ),
)

HARA2020_RECIPE = Recipe(
    sampling=Sampling.SLIDING,
    clip_len=16,
    frame_interval=1,
    num_clips=1,
    window_tail=WindowTail.LOOP,
    num_crops=1,
    short_side=112,
    crop_size=112,
    prescale=PreScale(size=240, side="short"),
    resize_filter=ResizeFilter.PIL_BILINEAR,
    size_rounding=SizeRounding.TRUNCATE,
    crop_rule=CropRule.ROUND,
    pixel_scale=1.0,
    mean=(0.4345, 0.4051, 0.3775),
    std=(0.2768, 0.2713, 0.2737),
    source=(
        "3D-ResNets-PyTorch master: frames extracted by util_scripts/generate_video_jpgs.py "
        "(ffmpeg -vf scale=-1:240, short side 240); main.py get_inference_utils: Resize(112) "
        "(torchvision, PIL bilinear, long side int(112·long/short)), CenterCrop(112) "
        "(round((L-112)/2)), ToTensor, ScaleValue(1), Normalize with mean.py's 'kinetics' "
        "mean/std; temporal_transforms.SlidingWindow(16, 16) over every frame with "
        "LoopPadding; inference.py averages the softmax over the windows."
    ),
)

ConvFactory = Callable[[int, int, int], nn.Module]


# --------------------------------------------------------------------------- blocks


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Module:
    return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Module:
    return nn.Conv3d(in_planes, out_planes, 1, stride=stride, bias=False)


class Conv2Plus1d(nn.Module):
    """A kt×k×k conv factorised into 1×k×k (spatial) -> BN -> ReLU -> kt×1×1 (temporal).

    The middle width keeps the parameter count of the full 3D conv (Tran et al.):
    mid = in·out·kt·k² // (in·k² + kt·out). The BN after the temporal conv belongs to the
    caller, as in a plain conv.
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        *,
        kernel: tuple[int, int] = (3, 3),
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        (kt, ks), (st, ss), (pt, ps) = kernel, stride, padding
        mid = in_planes * out_planes * kt * ks * ks // (in_planes * ks * ks + kt * out_planes)
        self.conv_s = nn.Conv3d(
            in_planes, mid, (1, ks, ks), stride=(1, ss, ss), padding=(0, ps, ps), bias=False
        )
        self.bn_s = nn.BatchNorm3d(mid)
        self.conv_t = nn.Conv3d(
            mid, out_planes, (kt, 1, 1), stride=(st, 1, 1), padding=(pt, 0, 0), bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_t(F.relu(self.bn_s(self.conv_s(x))))


def conv2plus1d(in_planes: int, out_planes: int, stride: int = 1) -> nn.Module:
    return Conv2Plus1d(in_planes, out_planes, stride=(stride, stride))


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by the stride, append zero channels after the
    existing ones (the 2018 code's avg-pool with kernel 1, then a concatenation)."""

    def __init__(self, out_planes: int, stride: int) -> None:
        super().__init__()
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        # F.pad's pairs run from the last dim backwards: (W, H, T, C); zeros in x's dtype.
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.out_planes - x.shape[1]))


class ShortcutB(nn.Module):
    """Projection shortcut: 1×1×1 conv carrying the stride, then BN."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.conv = conv1x1x1(in_planes, out_planes, stride)
        self.bn = nn.BatchNorm3d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    """conv 3×3×3 (stride) -> BN -> ReLU -> conv 3×3×3 -> BN, + shortcut, ReLU."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        expansion: int = 1,
        groups: int = 1,
        conv: ConvFactory = conv3x3x3,
    ) -> None:
        super().__init__()
        if expansion != 1 or groups != 1:
            raise ValueError("basic blocks have expansion 1 and no groups")
        self.conv1 = conv(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv(planes, planes, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1×1 -> BN -> ReLU -> 3×3×3 (stride, groups) -> BN -> ReLU -> 1×1×1 (×expansion) -> BN,
    + shortcut, ReLU. Expansion 4 for ResNet; 2 for Wide ResNet and ResNeXt (grouped)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        expansion: int = 4,
        groups: int = 1,
        conv: ConvFactory = conv3x3x3,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        if groups == 1:
            self.conv2 = conv(planes, planes, stride)
        else:
            self.conv2 = nn.Conv3d(
                planes, planes, 3, stride=stride, padding=1, groups=groups, bias=False
            )
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * expansion)
        self.bn3 = nn.BatchNorm3d(planes * expansion)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (He et al. 2016): BN -> ReLU -> conv, three times, + shortcut
    of the raw input; no ReLU after the sum."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        expansion: int = 4,
        groups: int = 1,
        conv: ConvFactory = conv3x3x3,
    ) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError("pre-activation blocks have no groups")
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv(planes, planes, stride)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * expansion)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        identity = x if self.shortcut is None else self.shortcut(x)
        return out + identity


BLOCKS: dict[str, type[nn.Module]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact": PreActBottleneck,
}


class Stem(nn.Module):
    """conv kt×7×7 stride (st, 2, 2) -> BN -> ReLU -> [max pool 3/2/1 in T, H and W]."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        *,
        t_size: int = 7,
        t_stride: int = 1,
        max_pool: bool = True,
        factorised: bool = False,
    ) -> None:
        super().__init__()
        if factorised:
            self.conv = Conv2Plus1d(
                in_channels,
                width,
                kernel=(t_size, 7),
                stride=(t_stride, 2),
                padding=(t_size // 2, 3),
            )
        else:
            self.conv = nn.Conv3d(
                in_channels,
                width,
                (t_size, 7, 7),
                stride=(t_stride, 2, 2),
                padding=(t_size // 2, 3, 3),
                bias=False,
            )
        self.bn = nn.BatchNorm3d(width)
        self.pool = nn.MaxPool3d(3, stride=2, padding=1) if max_pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))


# --------------------------------------------------------------------------- network


class ResNet3d(VideoClassifier):
    """A 3D ResNet in the layout of Hara et al.

    clip (N, C, T, H, W)
      ↓ stem: conv kt×7×7 /(st,2,2), BN, ReLU, max pool 3/2 (T, H and W)
      ↓ stage 1 (stride 1) … stage 4 (stride 2 in T, H and W on each stage's first block)
      ↓ global average pool -> embedding (N, widths[3] × expansion)
      ↓ head: fc -> logits (N, K)
    """

    def __init__(
        self,
        *,
        num_classes: int,
        # Stem.
        in_channels: int = 3,
        stem_width: int = 64,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        max_pool: bool = True,
        # Stages.
        block: Literal["basic", "bottleneck", "preact"] = "basic",
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        expansion: int | None = None,
        groups: int = 1,
        shortcut: Literal["A", "B"] = "B",
        factorised: bool = False,
        # Head.
        dropout: float = 0.0,
    ) -> None:
        expansion = expansion or (1 if block == "basic" else 4)
        super().__init__(
            in_channels=in_channels, embedding_dim=widths[3] * expansion, num_classes=num_classes
        )
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.stem = Stem(
            in_channels,
            stem_width,
            t_size=conv1_t_size,
            t_stride=conv1_t_stride,
            max_pool=max_pool,
            factorised=factorised,
        )
        block_cls, conv = BLOCKS[block], conv2plus1d if factorised else conv3x3x3
        in_planes, stages = stem_width, []
        for index, (depth, planes) in enumerate(zip(layers, widths, strict=True)):
            stride, out_planes = (1 if index == 0 else 2), planes * expansion
            blocks = []
            for b in range(depth):
                block_stride = stride if b == 0 else 1
                needs_shortcut = block_stride != 1 or in_planes != out_planes
                projection = None
                if needs_shortcut:
                    projection = (
                        ShortcutA(out_planes, block_stride)
                        if shortcut == "A"
                        else ShortcutB(in_planes, out_planes, block_stride)
                    )
                blocks.append(
                    block_cls(
                        in_planes,
                        planes,
                        stride=block_stride,
                        shortcut=projection,
                        expansion=expansion,
                        groups=groups,
                        conv=conv,
                    )
                )
                in_planes = out_planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = ClassifierHead(self.embedding_dim, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_clip(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.pool(x).flatten(1)


# --------------------------------------------------------------------------- checkpoints


def convert_hara(key: str) -> str:
    """Hara 2018/2020 ResNet, pre-act, WRN, ResNeXt and R(2+1)D keys -> ours.

    conv1 / bn1 (top level)   -> stem.conv / stem.bn
    conv1_s / bn1_s / conv1_t / bn1_t (R(2+1)D stem) -> stem.conv.conv_s / .bn_s / .conv_t, stem.bn
    layerL.i.*                -> stages.(L-1).i.*
    ...downsample.0 / .1      -> ...shortcut.conv / .bn
    ...convN_s / bnN_s / convN_t / bnN_t -> ...convN.conv_s / convN.bn_s / convN.conv_t, bnN
    fc                        -> head.fc
    """
    key = key.removeprefix("module.")
    if key.startswith(("conv1.", "bn1.", "conv1_s.", "bn1_s.", "conv1_t.", "bn1_t.")):
        key = "stem." + key
    key = re.sub(r"^layer(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.", key)
    key = key.replace(".downsample.0.", ".shortcut.conv.").replace(
        ".downsample.1.", ".shortcut.bn."
    )
    key = re.sub(r"\bconv(\d)_([st])\.", r"conv\1.conv_\2.", key)
    key = re.sub(r"\bbn(\d)_s\.", r"conv\1.bn_s.", key)
    key = re.sub(r"\bbn(\d)_t\.", r"bn\1.", key)
    key = key.replace("stem.conv1.", "stem.conv.").replace("stem.bn1.", "stem.bn.")
    return re.sub(r"^fc\.", "head.fc.", key)


def _architecture(cfg: dict) -> dict:
    """What the tensors of a file tell about a `model_cfgs` entry."""
    return {
        "block": cfg["block"],
        "layers": cfg["layers"],
        "expansion": cfg.get("expansion") or (1 if cfg["block"] == "basic" else 4),
        "groups": cfg.get("groups", 1),
        "factorised": cfg.get("factorised", False),
        "first_width": cfg.get("widths", (64,))[0],
    }


def _identify_hara_resnet(state_dict: Mapping[str, torch.Tensor]) -> Identified:
    """Read the architecture off the tensors: block type, depths, widths, groups, shortcut."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    factorised = "conv1_s.weight" in sd
    stem_conv = sd["conv1_t.weight" if factorised else "conv1.weight"]
    layers = tuple(
        len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5)
    )
    block = "basic"
    expansion, groups = 1, 1
    if "layer1.0.conv3.weight" in sd:
        expansion = sd["layer1.0.conv3.weight"].shape[0] // sd["layer1.0.conv1.weight"].shape[0]
        conv2 = sd.get("layer1.0.conv2.weight")
        groups = conv2.shape[0] // conv2.shape[1] if conv2 is not None else 1
        bn1, conv1 = sd.get("layer1.1.bn1.weight"), sd["layer1.1.conv1.weight"]
        block = "preact" if bn1 is not None and bn1.shape[0] != conv1.shape[0] else "bottleneck"
    first_width = sd.get("layer1.0.conv1.weight", sd.get("layer1.0.bn1_t.weight")).shape[0]
    found = {
        "block": block,
        "layers": layers,
        "expansion": expansion,
        "groups": groups,
        "factorised": factorised,
        "first_width": first_width,
    }
    name = next((n for n, cfg in model_cfgs.items() if _architecture(cfg) == found), None)
    if name is None:
        raise UnrecognisedCheckpointError(
            f"the file holds a 3D ResNet with {block} blocks "
            f"{layers}, expansion {expansion}, groups {groups}, first stage width {first_width}"
            f"{', (2+1)D convs' if factorised else ''}; no registered model has that layout"
        )
    variant = {
        "in_channels": sd["conv1_s.weight" if factorised else "conv1.weight"].shape[1],
        "stem_width": stem_conv.shape[0],
        "conv1_t_size": stem_conv.shape[2],
        "shortcut": "B" if "layer2.0.downsample.0.weight" in sd else "A",
    }
    return Identified(model=name, num_classes=sd["fc.weight"].shape[0], variant=variant)


def _is_hara_resnet(state_dict: Mapping[str, torch.Tensor]) -> bool:
    keys = {k.removeprefix("module.") for k in state_dict}
    has_stem = "conv1.weight" in keys or "conv1_s.weight" in keys
    return has_stem and "fc.weight" in keys and any(k.startswith("layer1.0.") for k in keys)


def is_hara2018(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """The 2018 files come from an nn.DataParallel model saved by PyTorch <= 0.3: every key
    starts with `module.` and BatchNorm has no `num_batches_tracked`."""
    keys = list(state_dict)
    return all(k.startswith("module.") for k in keys) or not any(
        k.endswith("num_batches_tracked") for k in keys
    )


register_layout(
    CheckpointLayout(
        name="hara2018_resnet",
        description="3D-ResNets-PyTorch CVPR2018 branch (resnet/preresnet/wideresnet/resnext"
        "-kinetics.pth): {'arch', 'state_dict'} with 'module.' keys, no num_batches_tracked",
        recipe=HARA2018_RECIPE,
        label_sets={400: "kinetics400"},
        matches=lambda sd: _is_hara_resnet(sd) and is_hara2018(sd),
        identify=_identify_hara_resnet,
        convert_key=convert_hara,
    )
)
register_layout(
    CheckpointLayout(
        name="hara2020_resnet",
        description="3D-ResNets-PyTorch master (r3d*_K/KM/..._200ep.pth, r2p1d): "
        "{'arch', 'state_dict'} with bare keys and num_batches_tracked",
        recipe=HARA2020_RECIPE,
        label_sets={700: "kinetics700", 400: "kinetics400"},
        matches=lambda sd: _is_hara_resnet(sd) and not is_hara2018(sd),
        identify=_identify_hara_resnet,
        convert_key=convert_hara,
    )
)


# --------------------------------------------------------------------------- variants

model_cfgs: dict[str, dict] = {
    # name              block          layers          widths / expansion / groups
    "r3d_10": dict(block="basic", layers=(1, 1, 1, 1)),
    "r3d_18": dict(block="basic", layers=(2, 2, 2, 2)),
    "r3d_34": dict(block="basic", layers=(3, 4, 6, 3)),
    "r3d_50": dict(block="bottleneck", layers=(3, 4, 6, 3)),
    "r3d_101": dict(block="bottleneck", layers=(3, 4, 23, 3)),
    "r3d_152": dict(block="bottleneck", layers=(3, 8, 36, 3)),
    "r3d_200": dict(block="bottleneck", layers=(3, 24, 36, 3)),
    "preact_r3d_200": dict(block="preact", layers=(3, 24, 36, 3)),
    "wide_r3d_50": dict(
        block="bottleneck", layers=(3, 4, 6, 3), widths=(128, 256, 512, 1024), expansion=2
    ),
    "resnext3d_101": dict(
        block="bottleneck",
        layers=(3, 4, 23, 3),
        widths=(128, 256, 512, 1024),
        expansion=2,
        groups=32,
    ),
    "r2plus1d_18": dict(block="basic", layers=(2, 2, 2, 2), factorised=True),
}


def _create_resnet3d(variant: str, **kwargs: object) -> ResNet3d:
    return ResNet3d(**{**model_cfgs[variant], **kwargs})


# --------------------------------------------------------------------------- registered models
# ResNets default to the 2020 release (Kinetics-700, shortcut B); the pre-activation, wide
# and ResNeXt nets only have 2018 Kinetics-400 weights. Pass shortcut="A" for the 2018
# ResNet-18/34 files (load_checkpoint infers it).


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_10(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("r3d_10", **kwargs)


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_18(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("r3d_18", **kwargs)


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_34(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("r3d_34", **kwargs)


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_50(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("r3d_50", **kwargs)


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_101(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("r3d_101", **kwargs)


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_152(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("r3d_152", **kwargs)


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_200(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("r3d_200", **kwargs)


@register_model(recipe=HARA2018_RECIPE, label_set="kinetics400")
def preact_r3d_200(**kwargs: object) -> ResNet3d:
    return _create_resnet3d("preact_r3d_200", **kwargs)


@register_model(recipe=HARA2018_RECIPE, label_set="kinetics400")
def wide_r3d_50(**kwargs: object) -> ResNet3d:
    """k=2. The 2018 release keeps a 64-channel stem; pass stem_width=128 for the 2020 code."""
    return _create_resnet3d("wide_r3d_50", **kwargs)


@register_model(recipe=HARA2018_RECIPE, label_set="kinetics400")
def resnext3d_101(**kwargs: object) -> ResNet3d:
    """Cardinality 32."""
    return _create_resnet3d("resnext3d_101", **kwargs)


@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r2plus1d_18(**kwargs: object) -> ResNet3d:
    """The 2020 code's parameter-matched R(2+1)D-18 (not torchvision's layout)."""
    return _create_resnet3d("r2plus1d_18", **kwargs)
