"""What the window index refuses, one tree (the service maps it to HTTP in `service/errors.py`).

WindowIndexError
├── InvalidQuery        a malformed search or write (a bad id, an empty or NaN vector)
├── NotIndexed          no windows of that model version (or that video, or that window)
└── WrongSpace          the vectors belong to another model version's embedding space
"""

from __future__ import annotations


class WindowIndexError(Exception):
    """Base class of the index's refusals."""

    code = "index_error"


class InvalidQuery(WindowIndexError):
    """A malformed search or index write: a bad video id, time range or embedding."""

    code = "bad_request"


class NotIndexed(WindowIndexError):
    """Nothing indexed for that model version, video or second."""

    code = "not_indexed"


class WrongSpace(WindowIndexError):
    """The index holds embeddings of another model version than the query's."""

    code = "index_model_mismatch"
