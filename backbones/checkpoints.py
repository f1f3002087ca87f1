"""Importing public checkpoint files: safe load, unwrap, detect the layout, rename, strict fill.

Each family file registers the public layouts it reads (`register_layout`), each with a key
renaming function that shows the foreign names in plain sight. `load_checkpoint` does the
rest the same way for all of them:

    torch.load(weights_only=True) -> find the state dict in its container -> detect the layout
    -> read the architecture off the tensors -> create_model -> rename keys -> strict fill
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backbones.errors import (
    CheckpointError,
    CheckpointMismatchError,
    UnrecognisedCheckpointError,
    UnsafeCheckpointError,
)
from backbones.layers import VideoClassifier
from backbones.registry import RecipeSource, create_model
from model_store.labels import load_label_set
from model_store.spec import ModelSpec

StateDict = Mapping[str, torch.Tensor]

#: Top-level fields under which public files keep their state dict (Hara/P3D/mmaction,
#: PySlowFast/pytorchvideo, timm-style, plain wrappers).
STATE_DICT_FIELDS = ("state_dict", "model_state", "model", "module")


@dataclass(frozen=True)
class Identified:
    """What a file's tensors determine: the registered model, its class count and variant."""

    model: str
    num_classes: int
    variant: dict[str, Any] = field(default_factory=dict)
    #: Other registered models with exactly these tensors (X3D-XS and -S share X3D-M's
    #: network and differ only in their training geometry); `load_checkpoint(model=...)`
    #: picks one of them.
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointLayout:
    """A public checkpoint layout: how to recognise it, read it and rename its keys."""

    name: str
    description: str
    recipe: RecipeSource
    #: Label set of the file's class count (only where the index order is documented).
    label_sets: Mapping[int, str]
    matches: Callable[[StateDict], bool]
    identify: Callable[[StateDict], Identified]
    #: File key -> our key; None for tensors that inference never uses (e.g. auxiliary heads).
    convert_key: Callable[[str], str | None]


_layouts: list[CheckpointLayout] = []


def register_layout(layout: CheckpointLayout) -> CheckpointLayout:
    if any(known.name == layout.name for known in _layouts):
        raise ValueError(f"checkpoint layout {layout.name!r} is registered twice")
    _layouts.append(layout)
    return layout


def list_layouts() -> list[CheckpointLayout]:
    return list(_layouts)


# --------------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch 2.13's words: "Unsupported global: GLOBAL x.Y was not an allowed global by
        # default" for an unknown class or function, "Trying to load unsupported GLOBAL
        # posix.system whose module posix is blocked" for os, subprocess, sys and the like
        # (what a __reduce__ payload names).
        found = re.search(r"\bGLOBAL ([\w.]+)( whose module [\w.]+ is blocked)?", str(exc))
        if found is None:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint") from None
        blocked = ", a module torch refuses outright" if found.group(2) else ""
        raise UnsafeCheckpointError(
            f"{path} needs arbitrary Python objects to load (it pickles {found.group(1)}"
            f"{blocked}); actserve only loads "
            "tensors and plain containers (torch.load weights_only=True). If you trust the "
            f"file, keep only its tensors with: actserve checkpoint resave --trust {path} "
            f"{path.with_suffix('.safe.pth')}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc}") from None
    except (KeyError, IndexError, TypeError, AttributeError):
        # torch's legacy (pre-zip) reader on arbitrary bytes: a text file is read as pickle
        # opcodes and fails on whichever lookup comes first.
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint") from None


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(container: Any) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a checkpoint, and the field it was found under (None: bare)."""
    if _is_state_dict(container):
        return dict(container), None
    if isinstance(container, Mapping):
        for name in STATE_DICT_FIELDS:
            if _is_state_dict(container.get(name)):
                return dict(container[name]), name
        fields = ", ".join(map(str, container)) or "none"
        raise UnrecognisedCheckpointError(
            f"no state dict found: expected tensors under one of {', '.join(STATE_DICT_FIELDS)}; "
            f"the file's top-level fields are: {fields}"
        )
    raise UnrecognisedCheckpointError(
        f"the file holds a {type(container).__name__}, not a state dict or a dict wrapping one"
    )


def detect_layout(state_dict: StateDict) -> CheckpointLayout:
    for layout in _layouts:
        if layout.matches(state_dict):
            return layout
    first = ", ".join(list(state_dict)[:5])
    known = ", ".join(layout.name for layout in _layouts)
    raise UnrecognisedCheckpointError(
        f"no known public layout matches this file (first keys: {first}); known layouts: {known}"
    )


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class CheckpointInfo:
    """What `actserve checkpoint inspect` reports about a file."""

    path: Path
    layout: CheckpointLayout
    identified: Identified
    state_dict_field: str | None
    top_level_fields: list[str]
    arch: str | None
    num_tensors: int
    num_parameters: int


def inspect_checkpoint(path: str | Path, *, container: Any = None) -> CheckpointInfo:
    """What a file holds. `container`: the file already read by `read_checkpoint`."""
    if container is None:
        container = read_checkpoint(path)
    state_dict, where = extract_state_dict(container)
    layout = detect_layout(state_dict)
    fields = [str(k) for k in container] if where is not None else []
    arch = container.get("arch") if where is not None else None
    return CheckpointInfo(
        path=Path(path),
        layout=layout,
        identified=layout.identify(state_dict),
        state_dict_field=where,
        top_level_fields=fields,
        arch=arch if isinstance(arch, str) else None,
        num_tensors=len(state_dict),
        num_parameters=sum(
            t.numel() for k, t in state_dict.items() if not k.endswith(_BUFFER_SUFFIXES)
        ),
    )


_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def load_checkpoint(
    path: str | Path,
    model: str | None = None,
    num_classes: int | None = None,
    *,
    label_set: str | None = None,
    container: Any = None,
    **variant: Any,
) -> tuple[VideoClassifier, ModelSpec]:
    """Build the model a public checkpoint file holds and fill every tensor from it.

    `model` and `num_classes` are checks: the file determines both, and a file that does not
    fit them is refused with what it holds instead. Where several registered models have the
    same tensors (X3D-XS, -S and -M), `model` picks one. `variant` sets options the tensors cannot
    tell (e.g. `conv1_t_stride` of a 3D ResNet, `block_types` of P3D). `label_set` names the
    classes when the file's class count has no documented label set.
    Returns the model in eval mode and its spec (the layout's test recipe and labels); the
    model's `checkpoint_layout` attribute names the layout the file was read as. `container`:
    the file already read by `read_checkpoint`, so callers that also inspect it read it once.
    """
    if container is None:
        container = read_checkpoint(path)
    state_dict, _ = extract_state_dict(container)
    layout = detect_layout(state_dict)
    found = layout.identify(state_dict)
    if model is not None and model != found.model:
        if model not in found.alternatives:
            also = "".join(f" or {name}" for name in found.alternatives)
            raise CheckpointMismatchError(
                f"{path} holds a {found.model}{also} ({layout.name} layout), not a {model}"
            )
        found = Identified(model, found.num_classes, found.variant)
    if num_classes is not None and num_classes != found.num_classes:
        raise CheckpointMismatchError(
            f"{path} has a {found.num_classes}-class head, not {num_classes} classes"
        )
    if label_set is not None:
        try:
            names = load_label_set(label_set)
        except ValueError as exc:
            raise CheckpointMismatchError(str(exc)) from None
        if len(names) != found.num_classes:
            raise CheckpointMismatchError(
                f"label set {label_set!r} has {len(names)} classes; {path} has {found.num_classes}"
            )
    net = create_model(
        found.model,
        num_classes=found.num_classes,
        label_set=label_set or layout.label_sets.get(found.num_classes),
        recipe=layout.recipe,
        **{**found.variant, **variant},
    )
    fill_strict(net, state_dict, layout, source=str(path))
    net.checkpoint_layout = layout.name
    return net.eval(), net.spec


def fill_strict(
    net: torch.nn.Module, state_dict: StateDict, layout: CheckpointLayout, *, source: str
) -> None:
    """Copy every tensor of the file into the model, or refuse with every offending key.

    Strict both ways: each file tensor lands in a parameter or buffer (or is one the layout
    declares unused at inference), and each parameter and buffer is filled; only BatchNorm's
    `num_batches_tracked`, which old files lack and eval never reads, may stay at zero.
    """
    renamed: dict[str, tuple[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        ours = layout.convert_key(key)
        if ours is None:
            continue
        if ours in renamed:
            raise CheckpointMismatchError(
                f"{source}: {renamed[ours][0]} and {key} both map to {ours}"
            )
        renamed[ours] = (key, tensor)
    own = net.state_dict()
    missing = [k for k in own if k not in renamed and not k.endswith("num_batches_tracked")]
    unexpected = [f"{fk} (as {k})" for k, (fk, _) in renamed.items() if k not in own]
    mis_shaped = [
        (fk, tuple(t.shape), tuple(own[k].shape))
        for k, (fk, t) in renamed.items()
        if k in own and t.shape != own[k].shape
    ]
    if missing or unexpected or mis_shaped:
        target = net.spec.backbone if hasattr(net, "spec") else type(net).__name__
        raise CheckpointMismatchError(
            f"{source} ({layout.name} layout) does not fit {target}",
            missing=missing,
            unexpected=unexpected,
            mis_shaped=mis_shaped,
        )
    net.load_state_dict({k: t for k, (_, t) in renamed.items()}, strict=False)


def resave_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Re-save a trusted checkpoint that needs full pickle as tensors and plain fields only.

    Runs arbitrary code from `source` (torch.load weights_only=False): only for files the
    user trusts. The result loads with weights_only=True.
    """
    container = torch.load(Path(source), map_location="cpu", weights_only=False)
    state_dict, where = extract_state_dict(container)
    kept: dict[str, Any] = {where or "state_dict": state_dict}
    if isinstance(container, Mapping) and where is not None:
        for key, value in container.items():
            if isinstance(key, str) and isinstance(value, str | int | float):
                kept[key] = value
    target = Path(target)
    torch.save(kept, target)
    return target
