"""Versioned, checksummed model artifacts and the spec that travels with them (torch-free)."""

from model_store.spec import ChannelOrder, ModelSpec, Recipe, Sampling

__all__ = ["ChannelOrder", "ModelSpec", "Recipe", "Sampling"]
