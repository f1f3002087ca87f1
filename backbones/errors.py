"""Errors raised by the backbone zoo.

BackboneError
├── UnknownModelError        no registered model has that name
├── ClipShapeError           a forward pass got a clip the network cannot take
└── CheckpointError          a checkpoint file cannot become a model
    ├── UnsafeCheckpointError     the file needs arbitrary pickle code to load
    ├── UnrecognisedCheckpointError  no known public layout matches the file
    └── CheckpointMismatchError   the file does not fit the model (keys, shapes, classes)
"""

from __future__ import annotations


class BackboneError(Exception):
    """Base class of every error this package raises on purpose."""


class UnknownModelError(BackboneError, KeyError):
    def __init__(self, name: str, close_matches: list[str]) -> None:
        hint = f"; did you mean {', '.join(close_matches)}?" if close_matches else ""
        super().__init__(f"unknown model {name!r}{hint} (`actserve zoo` lists them)")
        self.name = name
        self.close_matches = close_matches

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ClipShapeError(BackboneError, ValueError):
    """The input is not an (N, C, T, H, W) clip batch this network can take."""


class CheckpointError(BackboneError):
    """A checkpoint file cannot become a model."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects beyond tensors and plain containers."""


class UnrecognisedCheckpointError(CheckpointError):
    """No known public layout matches the keys of the file."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint does not fit the model; lists every offending key."""

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> None:
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mis_shaped = mis_shaped or []
        lines = [message]
        if self.missing:
            lines.append(f"missing from the file ({len(self.missing)}): {_short(self.missing)}")
        if self.unexpected:
            lines.append(
                f"in the file but not in the model ({len(self.unexpected)}): "
                f"{_short(self.unexpected)}"
            )
        if self.mis_shaped:
            shapes = [f"{k} file {list(f)} vs model {list(m)}" for k, f, m in self.mis_shaped]
            lines.append(f"shape differs ({len(shapes)}): {_short(shapes)}")
        super().__init__("\n  ".join(lines))


def _short(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit} more)" if len(items) > limit else "")
