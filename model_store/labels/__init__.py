"""Bundled class-name lists of the public action-recognition datasets.

One class per line; the line number (from 0) is the class index the public checkpoints use.
See README.md beside this file for sources and orderings.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


def list_label_sets() -> list[str]:
    """Names of the bundled label sets (file stems, e.g. 'kinetics400')."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".txt") for f in files if f.name.endswith(".txt"))


@cache
def load_label_set(name: str) -> tuple[str, ...]:
    """The class names of a bundled label set, by index."""
    if name not in list_label_sets():
        raise ValueError(
            f"unknown label set {name!r}; bundled sets: {', '.join(list_label_sets())}"
        )
    text = resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
