"""Small builders shared by the backbone tests."""

from __future__ import annotations

import torch

from backbones import create_model


def randomise_batchnorm(module: torch.nn.Module, *, spread: float = 0.3) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms (seeded), so that every tensor, and every
    rectification or weighting difference, shows in the output. Returns it in eval mode."""
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-spread, spread)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-spread, spread)
    return module.eval()


def meta_model(name: str, **kwargs: object) -> torch.nn.Module:
    """A registered model on the meta device: shapes and parameter counts, no memory."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def meta_state_dict(name: str, **kwargs: object) -> dict[str, torch.Tensor]:
    return meta_model(name, **kwargs).state_dict()
