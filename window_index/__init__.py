"""window_index: the window embeddings of indexed videos, searched by example or re-scored
through a probe's head. Torch-free and service-free, like `model_store`: the service, the
command line and jobs write and read it."""

from window_index.errors import InvalidQuery, NotIndexed, WindowIndexError, WrongSpace
from window_index.moments import Moment, merge_moments, score_classes
from window_index.store import Filters, Hit, Space, WindowIndex, Windows, check_video_id

__all__ = [
    "Filters",
    "Hit",
    "InvalidQuery",
    "Moment",
    "NotIndexed",
    "Space",
    "WindowIndex",
    "WindowIndexError",
    "Windows",
    "WrongSpace",
    "check_video_id",
    "merge_moments",
    "score_classes",
]
