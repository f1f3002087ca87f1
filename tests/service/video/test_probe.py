"""Probing: what the header says, and every refusal as its typed error, before decoding."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.errors import (
    AudioOnly,
    ContainerNotAllowed,
    CorruptVideo,
    LimitExceeded,
    NoDecodableFrames,
    NotAVideo,
    UnsupportedCodec,
    VideoError,
)
from service.video import DecodeOptions, VideoLimits, probe_video, sample_frames
from tests.service.video import media

#: The intake's default limits, passed explicitly as the service passes its own.
LIMITS = VideoLimits()

IDENTITY = media.raw_recipe()


def probe(path, limits: VideoLimits) -> object:
    return probe_video(path, limits)


def decode(path, limits: VideoLimits) -> object:
    return sample_frames(path, IDENTITY, DecodeOptions(), limits)


ENTRY_POINTS: list[Callable] = [probe, decode]


@pytest.mark.parametrize(
    ("name", "container", "codec", "size", "pix_fmt", "frames", "estimated"),
    [
        # MP4 counts its frames; Matroska does not (duration × fps)
        ("h264.mp4", "mov,mp4,m4a,3gp,3g2,mj2", "h264", (64, 48), "yuv420p", 96, False),
        ("h264.mkv", "matroska,webm", "h264", (64, 48), "yuv420p", 96, True),
        ("vp9.webm", "matroska,webm", "vp9", (64, 48), "yuv420p", 96, True),
        ("mpeg4.avi", "avi", "mpeg4", (64, 48), "yuv420p", 96, False),
        ("mjpeg.avi", "avi", "mjpeg", (64, 48), "yuvj420p", 96, False),
        # a header without a frame size: the first frame gives it
        ("mpeg4.mp4", "mov,mp4,m4a,3gp,3g2,mj2", "mpeg4", (64, 48), "yuv420p", 96, False),
        ("odd_h264.mp4", "mov,mp4,m4a,3gp,3g2,mj2", "h264", (321, 241), "yuv444p", 96, False),
    ],
)
def test_probe_reads_the_header(
    videos, name, container, codec, size, pix_fmt, frames, estimated
) -> None:
    info = probe_video(videos[name], LIMITS)
    assert (info.container, info.codec, (info.width, info.height)) == (container, codec, size)
    assert (info.pix_fmt, info.num_frames, info.frames_estimated) == (pix_fmt, frames, estimated)
    assert info.fps == pytest.approx(30.0)
    assert info.duration_s == pytest.approx(3.2, abs=0.05)
    assert (info.rotation, info.has_audio, info.variable_frame_rate) == (0, False, False)
    assert info.size_bytes == videos[name].stat().st_size


def test_probe_reads_rotation_audio_and_variable_rate(videos) -> None:
    rotated = probe_video(videos["rotated.mp4"], LIMITS)
    assert (rotated.rotation, rotated.display_size) == (90, (64, 48))
    assert probe_video(videos["with_audio.mp4"], LIMITS).has_audio
    # MP4 headers give the average rate (345 frames in 10 s) next to the nominal 30 fps
    vfr = probe_video(videos["vfr.mp4"], LIMITS)
    assert vfr.variable_frame_rate
    assert vfr.fps == pytest.approx(34.4, abs=0.1)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        # not a video at all
        ("random.bin", NotAVideo, "no video container"),
        ("empty.mp4", NotAVideo, "empty"),
        ("image.png", NotAVideo, r"still image \(png\)"),
        ("image.jpg", NotAVideo, r"still image \(jpeg\)"),
        # sound only
        ("audio.mp4", AudioOnly, "audio but no video"),
        ("audio.webm", AudioOnly, "audio but no video"),
        # outside the allow-lists
        ("stream.ts", ContainerNotAllowed, "'mpegts' is not allowed"),
        ("anim.gif", ContainerNotAllowed, "'gif' is not allowed"),
        ("mpeg2.mkv", UnsupportedCodec, "'mpeg2video' is not supported"),
        ("unknown_tag.mp4", UnsupportedCodec, "'unknown' is not supported"),
        # damaged beyond use
        ("moov_cut.mp4", CorruptVideo, "moov atom not found"),
        ("no_moov.mp4", CorruptVideo, "moov atom not found"),
        ("blank.avi", CorruptVideo, "17 packets failed to decode"),
    ],
)
def test_unusable_files_get_their_typed_error(videos, entry, name, error, match) -> None:
    with pytest.raises(error, match=match):
        entry(videos[name], VideoLimits())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_no_decodable_frame_is_its_own_error(videos, entry) -> None:
    with pytest.raises(NoDecodableFrames, match="no frame decodes"):
        entry(videos["blank.avi"], VideoLimits(max_corrupt_packets=1000))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("name", "limits", "limit", "value", "maximum"),
    [
        # sizes read before FFmpeg opens the file
        ("h264.mp4", {"max_upload_bytes": 1000}, "bytes", None, 1000),
        # the header
        ("h264.mp4", {"max_duration_s": 1.0}, "duration", 3.2, 1.0),
        ("h264.mp4", {"max_pixels": 1000}, "pixels", 64 * 48, 1000),
        # no size in the header (MPEG-4 Part 2 in MP4): the first frame's meets the limits
        ("wide_mpeg4.mp4", {}, "aspect_ratio", 16, 8.0),
        ("h264.mp4", {"max_frames": 50}, "frames", 96, 50),
        ("h264.mkv", {"max_frames": 50}, "frames", 96, 50),
        ("with_audio.mp4", {"max_streams": 1}, "streams", 2, 1),
        ("wide.mp4", {}, "aspect_ratio", 16, 8.0),
        # a 4096×4096 MJPEG of a few kilobytes per frame, refused without decoding it
        ("bomb.avi", {}, "pixels", 4096 * 4096, 3840 * 2160),
    ],
)
def test_limits_name_the_limit_its_value_and_maximum(
    videos, entry, name, limits, limit, value, maximum
) -> None:
    path = videos[name]
    with pytest.raises(LimitExceeded, match=f"^{limit} over the limit") as caught:
        entry(path, VideoLimits(**limits))
    expected = path.stat().st_size if value is None else value
    assert caught.value.limit == limit
    assert caught.value.value == pytest.approx(expected, abs=0.05)
    assert caught.value.maximum == maximum


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_without_a_header_size_the_decoder_refuses_oversized_frames(videos, entry) -> None:
    # The size is unknown until a frame decodes, and the decoder is capped at max_pixels.
    with pytest.raises(CorruptVideo, match="failed to decode before any frame"):
        entry(videos["mpeg4.mp4"], VideoLimits(max_pixels=1000))


def test_metadata_that_is_not_utf8_is_no_reason_to_refuse(videos) -> None:
    info = probe_video(videos["latin1_title.mp4"], LIMITS)
    assert (info.codec, info.num_frames) == ("h264", 96)


def test_allow_lists_are_configurable(videos) -> None:
    with pytest.raises(ContainerNotAllowed, match="'avi' is not allowed"):
        probe_video(videos["mjpeg.avi"], VideoLimits(containers=("mov", "matroska")))
    with pytest.raises(UnsupportedCodec, match="'h264' is not supported"):
        probe_video(videos["h264.mp4"], VideoLimits(codecs=("vp9",)))


def test_every_refusal_is_a_video_error() -> None:
    for error in (NotAVideo, AudioOnly, ContainerNotAllowed, UnsupportedCodec, CorruptVideo):
        assert issubclass(error, VideoError)
