"""Video action-recognition backbones in pure PyTorch, with importers for public checkpoints.

from backbones import create_model, list_models, load_checkpoint

model = create_model("r3d_50")                     # random weights, model.spec attached
model, spec = load_checkpoint("r3d50_K_200ep.pth")  # the file decides model and classes
"""

# Importing the family modules registers their models and checkpoint layouts.
from backbones import densenet3d, p3d, resnet3d, tpn, vov3d, x3d  # noqa: F401
from backbones.checkpoints import inspect_checkpoint, list_layouts, load_checkpoint
from backbones.errors import (
    BackboneError,
    CheckpointError,
    CheckpointMismatchError,
    ClipShapeError,
    UnknownModelError,
    UnrecognisedCheckpointError,
    UnsafeCheckpointError,
)
from backbones.layers import VideoClassifier
from backbones.registry import create_model, default_spec, list_models, model_entry

__all__ = [
    "BackboneError",
    "CheckpointError",
    "CheckpointMismatchError",
    "ClipShapeError",
    "UnknownModelError",
    "UnrecognisedCheckpointError",
    "UnsafeCheckpointError",
    "VideoClassifier",
    "create_model",
    "default_spec",
    "inspect_checkpoint",
    "list_layouts",
    "list_models",
    "load_checkpoint",
    "model_entry",
]
