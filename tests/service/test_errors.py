"""The service's error tree: documented, mapped to HTTP in one table (bad input never a 5xx),
and every error survives the trip out of a worker."""

from __future__ import annotations

import pickle

import pytest

import service.errors as errors
from service.errors import RequestError, ServiceError, code_for, status_for

#: Constructor arguments for each error; a new error class must be added here.
EXAMPLES: dict[type[ServiceError], tuple] = {
    errors.ServiceError: ("failed",),
    errors.RequestError: ("refused",),
    errors.BadRequest: ("top_k must be ≥ 1",),
    errors.Unauthorized: ("no token",),
    errors.Forbidden: ("the API key is not accepted here",),
    errors.ModelNotLoaded: ("no model 'x'",),
    errors.Conflict: ("version 2 is routed",),
    errors.UrlNotAllowed: ("127.0.0.1 is a loopback address",),
    errors.StreamNotFound: ("no stream 'x'",),
    errors.TooManyStreams: ("16 streams run already",),
    errors.JobNotFound: ("no job 'x'",),
    errors.InsufficientStorage: ("the jobs directory is full",),
    errors.RemoteUnavailable: ("s3://archive/v.mp4: failed 4 times",),
    errors.ModelLoadError: ("no ONNX or TorchScript artifact",),
    errors.UnsupportedMediaType: ("text/plain",),
    errors.UploadTooLarge: ("too big",),
    errors.RequestTimeout: ("the upload stalled",),
    errors.Overloaded: ("queue full",),
    errors.NotReady: ("draining",),
    errors.InsufficientStorage: ("the jobs directory is full",),
    errors.VersionBroken: ("version 2 of 'x' failed to load",),
    errors.DeadlineExceeded: ("too late",),
    errors.ClientDisconnected: ("gone",),
    errors.InferenceFailed: ("runtime raised",),
    errors.VideoError: ("not usable",),
    errors.NotAVideo: ("no video container",),
    errors.AudioOnly: ("audio but no video",),
    errors.ContainerNotAllowed: ("mpegts", ("mov", "matroska")),
    errors.UnsupportedCodec: ("mpeg2video", ("h264",)),
    errors.CorruptVideo: ("moov atom not found",),
    errors.NoDecodableFrames: ("no frame decodes",),
    errors.LimitExceeded: ("duration", 1200.5, 600.0, "s"),
    errors.TooFewFrames: (1, 2, "an optical-flow model"),
    errors.DecodeFailed: ("worker failed",),
    errors.DecodeTimeout: (60.0,),
    errors.DecodeOutOfMemory: (2**31,),
    errors.WorkerCrashed: (-11,),
}


#: Keyword arguments of the errors whose constructors need them.
KEYWORDS = {errors.UploadTooLarge: {"limit": 100}, errors.Overloaded: {"retry_after": 3}}


def all_errors() -> list[type[ServiceError]]:
    found, queue = [], [ServiceError]
    while queue:
        error = queue.pop()
        found.append(error)
        queue.extend(error.__subclasses__())
    return found


def test_every_error_has_an_example() -> None:
    assert set(all_errors()) == set(EXAMPLES)


@pytest.mark.parametrize("error", all_errors(), ids=lambda e: e.__name__)
def test_the_docstring_tree_draws_every_error(error: type[ServiceError]) -> None:
    assert f"{error.__name__} " in errors.__doc__
    assert error.__doc__, f"{error.__name__} needs a one-line docstring"


@pytest.mark.parametrize(("error", "args"), EXAMPLES.items(), ids=[e.__name__ for e in EXAMPLES])
def test_errors_survive_pickling(error: type[ServiceError], args: tuple) -> None:
    original = error(*args, **KEYWORDS.get(error, {}))
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


@pytest.mark.parametrize("error", all_errors(), ids=lambda e: e.__name__)
def test_every_error_has_a_status_and_a_code(error: type[ServiceError]) -> None:
    instance = error(*EXAMPLES[error], **KEYWORDS.get(error, {}))
    status = status_for(instance)
    if issubclass(error, RequestError):
        assert 400 <= status < 500, f"bad input must never be a 5xx: {error.__name__} -> {status}"
    assert code_for(instance) == error.code and error.code.islower()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NotAVideo("random bytes"), 415),
        (errors.AudioOnly("aac"), 415),
        (errors.UnsupportedCodec("prores", ("h264",)), 415),
        (errors.CorruptVideo("moov atom not found"), 422),
        (errors.LimitExceeded("duration", 900, 600, "s"), 422),
        (errors.DecodeTimeout(30.0), 422),
        (errors.UploadTooLarge("x", limit=1), 413),
        (errors.Overloaded("x", retry_after=2), 429),
        (errors.DeadlineExceeded("x"), 504),
        (errors.NotReady("x"), 503),
        (errors.ModelLoadError("x"), 422),
        (errors.JobNotFound("x"), 404),
        (errors.InsufficientStorage("x"), 507),
    ],
)
def test_status_table(error: ServiceError, status: int) -> None:
    assert status_for(error) == status
