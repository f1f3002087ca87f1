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
