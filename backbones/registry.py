"""The model registry: registered constructors, each with its default spec (timm-style).

@register_model(recipe=HARA2020_RECIPE, label_set="kinetics700")
def r3d_50(**kwargs) -> ResNet3d: ...

model = create_model("r3d_50", num_classes=400)   # model.spec is a ModelSpec
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from backbones.errors import UnknownModelError
from backbones.layers import VideoClassifier
from model_store.labels import load_label_set
from model_store.spec import ModelSpec, Recipe

RecipeSource = Recipe | Callable[[VideoClassifier], Recipe]
Constructor = TypeVar("Constructor", bound=Callable[..., VideoClassifier])


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its constructor and the defaults its spec starts from."""

    name: str
    family: str
    constructor: Callable[..., VideoClassifier]
    recipe: RecipeSource
    label_set: str | None
    num_classes: int


_registry: dict[str, ModelEntry] = {}


def register_model(
    *, recipe: RecipeSource, label_set: str | None = None, num_classes: int | None = None
) -> Callable[[Constructor], Constructor]:
    """Register a constructor under its function name with its default recipe and labels.

    `recipe` is a `Recipe`, or a function of the built model for recipes that depend on the
    variant (e.g. an optical-flow stem). The default class count is the label set's size.
    """

    def decorator(constructor: Constructor) -> Constructor:
        name = constructor.__name__
        if name in _registry:
            raise ValueError(f"model {name!r} is registered twice")
        classes = num_classes or (len(load_label_set(label_set)) if label_set else None)
        if classes is None:
            raise ValueError(f"model {name!r} needs a label_set or num_classes")
        family = constructor.__module__.rsplit(".", 1)[-1]
        _registry[name] = ModelEntry(name, family, constructor, recipe, label_set, classes)
        return constructor

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, in natural order
    (r3d_10, r3d_18, …, r3d_101)."""
    names = (n for n in _registry if fnmatch.fnmatchcase(n, pattern))
    return sorted(
        names, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)]
    )


def model_entry(name: str) -> ModelEntry:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownModelError(name, difflib.get_close_matches(name, _registry, n=3)) from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    label_set: str | None = None,
    recipe: RecipeSource | None = None,
    **variant: object,
) -> VideoClassifier:
    """Build a registered model (random weights) with its spec attached as `model.spec`.

    `variant` holds architecture options of the family (e.g. `shortcut="A"` for a 3D ResNet);
    `label_set` and `recipe` replace the defaults (checkpoint importers pass the file's). A
    class count other than the label set's drops the labels: the head is new.
    """
    entry = model_entry(name)
    classes = num_classes or entry.num_classes
    model = entry.constructor(num_classes=classes, **variant)
    if label_set is None and entry.label_set and len(load_label_set(entry.label_set)) == classes:
        label_set = entry.label_set
    recipe = recipe or entry.recipe
    recipe = recipe if isinstance(recipe, Recipe) else recipe(model)
    if recipe.in_channels != model.in_channels and model.in_channels % 2 == 0:
        # A flow stem (2 channels per flow field) on a family whose recipes are RGB: the same
        # sampling and geometry, over TV-L1 flow stacks.
        recipe = recipe.as_flow(frames_per_stack=model.in_channels // 2)
    model.spec = ModelSpec(
        backbone=name,
        recipe=recipe,
        num_classes=model.num_classes,
        embedding_dim=model.embedding_dim,
        label_set=label_set,
    )
    return model


def default_spec(name: str, **variant: object) -> ModelSpec:
    """The spec `create_model(name, **variant)` would attach, without allocating weights."""
    with torch.device("meta"):
        return create_model(name, **variant).spec
