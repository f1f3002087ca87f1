"""Write our models' state dicts in the public layouts, to test the importers on files whose
expected output is known (the model they came from)."""

from __future__ import annotations

import re
from collections import OrderedDict

import torch


def to_hara(state_dict: dict[str, torch.Tensor], *, year: int, factorised: bool = False):
    """Our ResNet3d keys -> Hara 2018 ('module.', no num_batches_tracked) or 2020 (bare)."""
    out = OrderedDict()
    for key, tensor in state_dict.items():
        if year == 2018 and key.endswith("num_batches_tracked"):
            continue
        k = re.sub(r"^stem\.conv\.conv_([st])\.", r"conv1_\1.", key)
        k = re.sub(r"^stem\.conv\.bn_s\.", "bn1_s.", k)
        k = re.sub(r"^stem\.conv\.", "conv1.", k)
        k = re.sub(r"^stem\.bn\.", "bn1_t." if factorised else "bn1.", k)
        k = re.sub(r"^stages\.(\d)\.", lambda m: f"layer{int(m[1]) + 1}.", k)
        k = k.replace(".shortcut.conv.", ".downsample.0.").replace(
            ".shortcut.bn.", ".downsample.1."
        )
        k = re.sub(r"\.conv(\d)\.conv_([st])\.", r".conv\1_\2.", k)
        k = re.sub(r"\.conv(\d)\.bn_s\.", r".bn\1_s.", k)
        if factorised:
            k = re.sub(r"^(layer\d\.\d+)\.bn(\d)\.", r"\1.bn\2_t.", k)
        k = re.sub(r"^head\.fc\.", "fc.", k)
        out[("module." if year == 2018 else "") + k] = tensor
    return out


def to_hara2018_densenet(state_dict: dict[str, torch.Tensor]):
    """Our DenseNet3d keys -> the 2018 file's dotted names under 'module.'."""
    out = OrderedDict()
    for key, tensor in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        k = re.sub(r"^stem\.conv\.", "features.conv0.", key)
        k = re.sub(r"^stem\.bn\.", "features.norm0.", k)
        k = re.sub(
            r"^stages\.(\d)\.layers\.(\d+)\.(norm|conv)([12])\.",
            lambda m: (
                f"features.denseblock{int(m[1]) + 1}.denselayer{int(m[2]) + 1}.{m[3]}.{m[4]}."
            ),
            k,
        )
        k = re.sub(
            r"^stages\.(\d)\.transition\.", lambda m: f"features.transition{int(m[1]) + 1}.", k
        )
        k = re.sub(r"^final_norm\.", "features.norm5.", k)
        k = re.sub(r"^head\.fc\.", "classifier.", k)
        out["module." + k] = tensor
    return out


P3D_NAMES = {
    "shortcut.conv": "downsample.0",
    "shortcut.bn": "downsample.1",
    "conv_reduce": "conv1",
    "bn_reduce": "bn1",
    "conv_s": "conv2",
    "bn_s": "bn2",
    "conv_t": "conv3",
    "bn_t": "bn3",
    "conv_mid": "conv_normal",
    "bn_mid": "bn_normal",
    "conv_expand": "conv4",
    "bn_expand": "bn4",
}


def to_p3d_port(state_dict: dict[str, torch.Tensor]):
    """Our P3D keys -> the qijiezhao port's (no num_batches_tracked)."""
    out = OrderedDict()
    for key, tensor in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        k = key.replace("stem.conv.", "conv1_custom.").replace("stem.bn.", "bn1.")
        k = k.replace("head.fc.", "fc.")
        m = re.match(r"^stages\.(\d)\.(\d+)\.(.+)\.(\w+)$", k)
        if m:
            k = f"layer{int(m[1]) + 1}.{m[2]}.{P3D_NAMES.get(m[3], m[3])}.{m[4]}"
        out[k] = tensor
    return out


SLOWFAST_SKELETON = {
    "stem.conv_s": "s1.pathway0_stem.conv_xy",
    "stem.conv_t": "s1.pathway0_stem.conv",
    "stem.bn": "s1.pathway0_stem.bn",
    "embedding.conv5": "head.conv_5",
    "embedding.bn5": "head.conv_5_bn",
    "embedding.lin5": "head.lin_5",
    "head.fc": "head.projection",
}
SLOWFAST_BLOCK_NAMES = {
    "shortcut.conv": "branch1",
    "shortcut.bn": "branch1_bn",
    # X3D bottleneck
    "conv_a": "branch2.a",
    "bn_a": "branch2.a_bn",
    "conv_b": "branch2.b",
    "bn_b": "branch2.b_bn",
    "se.fc1": "branch2.se.fc1",
    "se.fc2": "branch2.se.fc2",
    "conv_c": "branch2.c",
    "bn_c": "branch2.c_bn",
    # VoV3D T-OSA aggregation
    "conv_agg": "branch2.c",
    "bn_agg": "branch2.c_bn",
}
VOV3D_LAYER_NAMES = {
    "conv_a": "a.0",
    "bn_a": "a.1",
    "conv_s": "b1",
    "conv_t": "b2",
    "bn_st": "b_bn",
    "se.fc1": "se.fc1",
    "se.fc2": "se.fc2",
    "conv_c": "c.0",
    "bn_c": "c.1",
}


def to_slowfast(state_dict: dict[str, torch.Tensor], *, batches_tracked: bool = True):
    """Our X3D or VoV3D keys -> PySlowFast's (s1.pathway0_stem, sN.pathway0_resI, head)."""
    out = OrderedDict()
    for key, tensor in state_dict.items():
        if not batches_tracked and key.endswith("num_batches_tracked"):
            continue
        module, _, name = key.rpartition(".")
        if module in SLOWFAST_SKELETON:
            module = SLOWFAST_SKELETON[module]
        else:
            stage, block, rest = re.match(r"^stages\.(\d)\.(\d+)\.(.+)$", module).groups()
            layer = re.match(r"^layers\.(\d+)\.(.+)$", rest)
            if layer:
                rest = f"branch2.layers.{layer[1]}.{VOV3D_LAYER_NAMES[layer[2]]}"
            else:
                rest = SLOWFAST_BLOCK_NAMES[rest]
            module = f"s{int(stage) + 2}.pathway0_res{block}.{rest}"
        out[f"{module}.{name}"] = tensor
    return out


PYTORCHVIDEO_X3D_NAMES = {
    "stem.conv_s": "blocks.0.conv.conv_t",  # sic: pytorchvideo's conv_t is the 1×3×3 conv
    "stem.conv_t": "blocks.0.conv.conv_xy",
    "stem.bn": "blocks.0.norm",
    "embedding.conv5": "blocks.5.pool.pre_conv",
    "embedding.bn5": "blocks.5.pool.pre_norm",
    "embedding.lin5": "blocks.5.pool.post_conv",
    "head.fc": "blocks.5.proj",
    "shortcut.conv": "branch1_conv",
    "shortcut.bn": "branch1_norm",
    "conv_a": "branch2.conv_a",
    "bn_a": "branch2.norm_a",
    "conv_b": "branch2.conv_b",
    "bn_b": "branch2.norm_b.0",
    "se.fc1": "branch2.norm_b.1.block.0",
    "se.fc2": "branch2.norm_b.1.block.2",
    "conv_c": "branch2.conv_c",
    "bn_c": "branch2.norm_c",
}


def to_pytorchvideo_x3d(state_dict: dict[str, torch.Tensor]):
    """Our X3D keys -> the pytorchvideo hub's (blocks.N.*)."""
    out = OrderedDict()
    for key, tensor in state_dict.items():
        module, _, name = key.rpartition(".")
        found = re.match(r"^stages\.(\d)\.(\d+)\.(.+)$", module)
        if found:
            stage, block, rest = found.groups()
            module = f"blocks.{int(stage) + 1}.res_blocks.{block}.{PYTORCHVIDEO_X3D_NAMES[rest]}"
        else:
            module = PYTORCHVIDEO_X3D_NAMES[module]
        out[f"{module}.{name}"] = tensor
    return out


def to_mmaction_tpn(
    state_dict: dict[str, torch.Tensor], *, trunk: str, aux_classes: int | None = None
):
    """Our TPN keys -> an mmaction2 TPN recognizer's (ConvModule names; TSM's shift wrapper
    `.net` on each block's first conv), plus the auxiliary head mmaction2 also saves (random
    tensors of its shapes) when `aux_classes` is given."""
    out = OrderedDict()
    for key, tensor in state_dict.items():
        k = re.sub(r"^stem\.(conv|bn)\.", r"backbone.conv1.\1.", key)
        k = re.sub(
            r"^stages\.(\d)\.(\d+)\.conv(\d)\.",
            lambda m: (
                f"backbone.layer{int(m[1]) + 1}.{m[2]}.conv{m[3]}.conv."
                + ("net." if trunk == "tsm" and m[3] == "1" else "")
            ),
            k,
        )
        k = re.sub(
            r"^stages\.(\d)\.(\d+)\.bn(\d)\.",
            lambda m: f"backbone.layer{int(m[1]) + 1}.{m[2]}.conv{m[3]}.bn.",
            k,
        )
        k = re.sub(
            r"^stages\.(\d)\.(\d+)\.shortcut\.",
            lambda m: f"backbone.layer{int(m[1]) + 1}.{m[2]}.downsample.",
            k,
        )
        k = re.sub(r"^neck\.spatial_modulation\.", "neck.spatial_modulation.spatial_modulation.", k)
        k = re.sub(
            r"^neck\.temporal_modulation\.(\d+)\.conv\.",
            r"neck.temporal_modulation_ops.\1.conv.conv.",
            k,
        )
        k = re.sub(r"^neck\.downsample\.(\d+)\.conv\.", r"neck.downsample_ops.\1.conv.conv.", k)
        for ours, theirs in (("top_down", "level_fusion_1"), ("bottom_up", "level_fusion_2")):
            k = re.sub(
                rf"^neck\.{ours}_fusion\.reduce\.(\d+)\.", rf"neck.{theirs}.downsamples.\1.conv.", k
            )
            k = re.sub(rf"^neck\.{ours}_fusion\.fuse\.", f"neck.{theirs}.fusion_conv.", k)
        k = re.sub(r"^head\.fc\.", "cls_head.fc_cls.", k)
        out[k] = tensor
    if aux_classes is not None:
        generator = torch.Generator().manual_seed(0)
        shapes = {
            "neck.aux_head.conv.conv.weight": (2048, 1024, 1, 3, 3),
            "neck.aux_head.conv.bn.weight": (2048,),
            "neck.aux_head.conv.bn.bias": (2048,),
            "neck.aux_head.conv.bn.running_mean": (2048,),
            "neck.aux_head.conv.bn.running_var": (2048,),
            "neck.aux_head.fc.weight": (aux_classes, 2048),
            "neck.aux_head.fc.bias": (aux_classes,),
        }
        for key, shape in shapes.items():
            out[key] = torch.rand(shape, generator=generator)
        out["neck.aux_head.conv.bn.num_batches_tracked"] = torch.tensor(0)
    return out
