"""The service's error tree: documented, and every error survives the trip out of a worker."""

from __future__ import annotations

import pickle

import pytest

import service.errors as errors
from service.errors import RequestError

#: Constructor arguments for each error; a new error class must be added here.
EXAMPLES: dict[type[RequestError], tuple] = {
    errors.RequestError: ("refused",),
    errors.VideoError: ("not usable",),
    errors.NotAVideo: ("no video container",),
    errors.AudioOnly: ("audio but no video",),
    errors.ContainerNotAllowed: ("mpegts", ("mov", "matroska")),
    errors.UnsupportedCodec: ("mpeg2video", ("h264",)),
    errors.CorruptVideo: ("moov atom not found",),
    errors.NoDecodableFrames: ("no frame decodes",),
    errors.LimitExceeded: ("duration", 1200.5, 600.0, "s"),
    errors.DecodeFailed: ("worker failed",),
    errors.DecodeTimeout: (60.0,),
    errors.DecodeOutOfMemory: (2**31,),
    errors.WorkerCrashed: (-11,),
}


def all_errors() -> list[type[RequestError]]:
    found, queue = [], [RequestError]
    while queue:
        error = queue.pop()
        found.append(error)
        queue.extend(error.__subclasses__())
    return found


def test_every_error_has_an_example() -> None:
    assert set(all_errors()) == set(EXAMPLES)


@pytest.mark.parametrize("error", all_errors(), ids=lambda e: e.__name__)
def test_the_docstring_tree_draws_every_error(error: type[RequestError]) -> None:
    assert f"{error.__name__} " in errors.__doc__
    assert error.__doc__, f"{error.__name__} needs a one-line docstring"


@pytest.mark.parametrize(("error", "args"), EXAMPLES.items(), ids=[e.__name__ for e in EXAMPLES])
def test_errors_survive_pickling(error: type[RequestError], args: tuple) -> None:
    original = error(*args)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is error
    assert str(copy) == str(original)
    assert vars(copy) == vars(original)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("bytes", 314_572_800, 209_715_200, "bytes"),
            "bytes over the limit: 314,572,800 bytes > 209,715,200 bytes",
        ),
        (("duration", 1200.5, 600.0, "s"), "duration over the limit: 1,200.5 s > 600 s"),
        (("aspect_ratio", 16.0, 8.0), "aspect_ratio over the limit: 16 > 8"),
    ],
)
def test_limit_messages_name_the_limit_value_and_maximum(args: tuple, message: str) -> None:
    error = errors.LimitExceeded(*args)
    assert str(error) == message
    assert (error.limit, error.value, error.maximum) == args[:3]
