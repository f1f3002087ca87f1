"""3D DenseNet-BC 121/169/201/264 (Hara et al., CVPR 2018; kenshohara/3D-ResNets-PyTorch).

Huang et al.'s DenseNet-BC inflated to 3D: growth 32, bottleneck factor 4, 64 initial
features. The 2018 code (CVPR2018 branch, the released densenet-121/201-kinetics.pth) names
its dense-layer modules with dots (`norm.1`, `conv.1`, ...), which modern PyTorch cannot
register, and declares the final norm as BatchNorm2d on a 5-D tensor (a plain per-channel BN
in 2017 PyTorch); the 2020 code (master) fixes both. Its fixed head pool, kernel
(ceil(T/16), floor(S/32), floor(S/32)), is a global average at 16×112, as used here.
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
from backbones.resnet3d import HARA2018_RECIPE, HARA2020_RECIPE, Stem

__all__ = ["DenseNet3d"]


# --------------------------------------------------------------------------- blocks


class DenseLayer(nn.Module):
    """BN -> ReLU -> 1×1×1 conv (bn_size·growth) -> BN -> ReLU -> 3×3×3 conv (growth);
    the new features are concatenated after the input."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm3d(in_features)
        self.conv1 = nn.Conv3d(in_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth_rate)
        self.conv2 = nn.Conv3d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv1(F.relu(self.norm1(x)))
        new = self.conv2(F.relu(self.norm2(new)))
        return torch.cat([x, new], dim=1)


class Transition(nn.Module):
    """BN -> ReLU -> 1×1×1 conv halving the channels -> 2×2×2 average pool (halves T too)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm3d(in_features)
        self.conv = nn.Conv3d(in_features, out_features, 1, bias=False)
        self.pool = nn.AvgPool3d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(F.relu(self.norm(x))))


class DenseStage(nn.Module):
    """A dense block, then (except after the last block) a transition."""

    def __init__(
        self, in_features: int, num_layers: int, growth_rate: int, bn_size: int, last: bool
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(
                DenseLayer(in_features + i * growth_rate, growth_rate, bn_size)
                for i in range(num_layers)
            )
        )
        self.out_features = in_features + num_layers * growth_rate
        self.transition: nn.Module = nn.Identity()
        if not last:
            self.transition = Transition(self.out_features, self.out_features // 2)
            self.out_features //= 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transition(self.layers(x))


# --------------------------------------------------------------------------- network


class DenseNet3d(VideoClassifier):
    """3D DenseNet-BC.

    clip (N, C, T, H, W)
      ↓ stem: conv kt×7×7 /(st,2,2), BN, ReLU, max pool 3/2 (T, H and W)
      ↓ dense block 1 + transition … dense block 4
      ↓ final BN, ReLU, global average pool -> embedding (N, D)
      ↓ head: classifier -> logits (N, K)
    """

    def __init__(
        self,
        *,
        num_classes: int,
        # Stem.
        in_channels: int = 3,
        init_features: int = 64,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        max_pool: bool = True,
        # Stages.
        block_config: tuple[int, int, int, int] = (6, 12, 24, 16),
        growth_rate: int = 32,
        bn_size: int = 4,
        # Head.
        dropout: float = 0.0,
    ) -> None:
        features, stages = init_features, []
        for index, num_layers in enumerate(block_config):
            stage = DenseStage(
                features, num_layers, growth_rate, bn_size, last=index == len(block_config) - 1
            )
            stages.append(stage)
            features = stage.out_features
        super().__init__(in_channels=in_channels, embedding_dim=features, num_classes=num_classes)
        self.stem = Stem(
            in_channels,
            init_features,
            t_size=conv1_t_size,
            t_stride=conv1_t_stride,
            max_pool=max_pool,
        )
        self.stages = nn.ModuleList(stages)
        # Each transition's 2×2×2 pool needs two positions: 2^transitions at stage 1, before
        # that the stem's pool (3/2/1) and its stride-2 (stride-st in T) conv.
        need = 2 ** (len(block_config) - 1)
        need = 2 * need - 1 if max_pool else need
        self.min_frames = (need - 1) * conv1_t_stride + 1
        self.min_side = (need - 1) * 2 + 1
        self.final_norm = nn.BatchNorm3d(features)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = ClassifierHead(features, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_clip(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.pool(F.relu(self.final_norm(x))).flatten(1)


# --------------------------------------------------------------------------- checkpoints


def convert_hara_densenet(key: str) -> str:
    """Hara 2018 and 2020 DenseNet keys -> ours.

    features.conv0 (2018) / features.conv1 (2020)  -> stem.conv
    features.norm0 (2018) / features.norm1 (2020)  -> stem.bn
    features.denseblockB.denselayerL.norm.1 (2018) / .norm1 (2020)
                                                   -> stages.(B-1).layers.(L-1).norm1
        (likewise conv.1 / conv1, norm.2 / norm2, conv.2 / conv2)
    features.transitionB.{norm,conv}               -> stages.(B-1).transition.{norm,conv}
    features.norm5                                 -> final_norm
    classifier                                     -> head.fc
    """
    key = key.removeprefix("module.")
    key = re.sub(r"^features\.(conv0|conv1)\.", "stem.conv.", key)
    key = re.sub(r"^features\.(norm0|norm1)\.", "stem.bn.", key)
    key = re.sub(
        r"^features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])\.",
        lambda m: f"stages.{int(m[1]) - 1}.layers.{int(m[2]) - 1}.{m[3]}{m[4]}.",
        key,
    )
    key = re.sub(
        r"^features\.transition(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.transition.", key
    )
    key = re.sub(r"^features\.norm5\.", "final_norm.", key)
    return re.sub(r"^classifier\.", "head.fc.", key)


def _identify_densenet(state_dict: Mapping[str, torch.Tensor]) -> Identified:
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    block_config = tuple(
        len({k.split(".")[2] for k in sd if k.startswith(f"features.denseblock{b}.")})
        for b in range(1, 5)
    )
    name = next((n for n, cfg in model_cfgs.items() if cfg["block_config"] == block_config), None)
    if name is None:
        raise UnrecognisedCheckpointError(
            f"the file holds a 3D DenseNet with dense blocks of {block_config} layers; "
            "no registered model has that layout"
        )
    stem = sd.get("features.conv0.weight", sd.get("features.conv1.weight"))
    variant = {"in_channels": stem.shape[1], "conv1_t_size": stem.shape[2]}
    return Identified(model=name, num_classes=sd["classifier.weight"].shape[0], variant=variant)


def _is_densenet(state_dict: Mapping[str, torch.Tensor]) -> bool:
    keys = {k.removeprefix("module.") for k in state_dict}
    return "classifier.weight" in keys and any(k.startswith("features.denseblock1.") for k in keys)


def _is_densenet_2018(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(".norm.1." in k for k in state_dict)


register_layout(
    CheckpointLayout(
        name="hara2018_densenet",
        description="3D-ResNets-PyTorch CVPR2018 branch (densenet-121/201-kinetics.pth): "
        "'module.' keys, dotted layer names (norm.1, conv.1), features.conv0/norm0",
        recipe=HARA2018_RECIPE,
        label_sets={400: "kinetics400"},
        matches=lambda sd: _is_densenet(sd) and _is_densenet_2018(sd),
        identify=_identify_densenet,
        convert_key=convert_hara_densenet,
    )
)
register_layout(
    CheckpointLayout(
        name="hara2020_densenet",
        description="3D-ResNets-PyTorch master: bare keys, features.conv1/norm1, "
        "denselayerL.norm1/conv1/norm2/conv2, num_batches_tracked",
        recipe=HARA2020_RECIPE,
        label_sets={700: "kinetics700", 400: "kinetics400"},
        matches=lambda sd: _is_densenet(sd) and not _is_densenet_2018(sd),
        identify=_identify_densenet,
        convert_key=convert_hara_densenet,
    )
)


# --------------------------------------------------------------------------- variants

model_cfgs: dict[str, dict] = {
    # name                layers per dense block
    "densenet3d_121": dict(block_config=(6, 12, 24, 16)),
    "densenet3d_169": dict(block_config=(6, 12, 32, 32)),
    "densenet3d_201": dict(block_config=(6, 12, 48, 32)),
    "densenet3d_264": dict(block_config=(6, 12, 64, 48)),
}


def _create_densenet3d(variant: str, **kwargs: object) -> DenseNet3d:
    return DenseNet3d(**{**model_cfgs[variant], **kwargs})


# --------------------------------------------------------------------------- registered models
# The released DenseNets (121 and 201) are the 2018 Kinetics-400 files.


@register_model(recipe=HARA2018_RECIPE, label_set="kinetics400")
def densenet3d_121(**kwargs: object) -> DenseNet3d:
    return _create_densenet3d("densenet3d_121", **kwargs)


@register_model(recipe=HARA2018_RECIPE, label_set="kinetics400")
def densenet3d_169(**kwargs: object) -> DenseNet3d:
    return _create_densenet3d("densenet3d_169", **kwargs)


@register_model(recipe=HARA2018_RECIPE, label_set="kinetics400")
def densenet3d_201(**kwargs: object) -> DenseNet3d:
    return _create_densenet3d("densenet3d_201", **kwargs)


@register_model(recipe=HARA2018_RECIPE, label_set="kinetics400")
def densenet3d_264(**kwargs: object) -> DenseNet3d:
    return _create_densenet3d("densenet3d_264", **kwargs)
