"""The reader of one stream, in a worker process of its own: open the URL with PyAV (FFmpeg),
decode, sample the frames the windows need, cut and resize them as the recipe says, and send
them to the service; on loss, reconnect with exponential backoff and full jitter.

Only sampled frames are converted (the costly step); with an intra-only codec (MJPEG) the
frames between samples are not even decoded. A reader that falls more than `max_lag_s` behind
the source's own clock (its decoder slower than real time) skips to the next keyframe, the
frames in between dropped and counted: it never lags further and further behind. The service
reads the queue as frames come; when it falls behind, `put_nowait` fails and the frame is
dropped and counted, so the reader never builds a backlog either. A URL is checked against the
allow-list and SSRF rules again before every connection (its name may resolve elsewhere by
then).

Messages on the queue, as tuples:

    ("connecting", attempt)
    ("live", {"fps", "period_s", "frame_size", "codec"})
    ("frame", stream_s, wall, pixels)             pixels: (H, W, 3) uint8, the centre crop
    ("stats", frames_read, frames_dropped)        every second, counts since the last
    ("error", message, retry_in_s)
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queues
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

import av
import av.error

from model_store import Recipe
from service.errors import UrlNotAllowed
from service.net_policy import UrlPolicy, redact
from service.video.pixels import FrameConverter
from service.video.sampling import ViewPlan, crop_boxes, frame_geometry

logger = logging.getLogger("actserve.streams.source")

#: Frame rate assumed when a stream declares none.
FALLBACK_FPS = 25.0
#: Seconds of a stream FFmpeg may read to find its parameters when opening it.
PROBE_S = 1.0
#: Seconds between the reader's counts.
STATS_EVERY_S = 1.0


@dataclass(frozen=True)
class SourceConfig:
    url: str
    recipe: Recipe
    window_s: float | None
    policy: UrlPolicy
    connect_timeout_s: float
    read_timeout_s: float
    reconnect_min_s: float
    reconnect_max_s: float
    max_lag_s: float


def backoff(attempt: int, first: float, longest: float) -> float:
    """Seconds to wait before reconnection `attempt` (1, 2, ...): full jitter over an
    exponentially growing bound (AWS's "exponential backoff and jitter")."""
    bound = min(longest, first * 2 ** max(0, attempt - 1))
    return random.uniform(first / 2, bound)


def run_source(config: SourceConfig, out: Any) -> None:
    """The worker's main loop, until the process is terminated."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service stops it; Ctrl-C is its own
    with contextlib.suppress(OSError):
        os.nice(5)  # decoding yields to the front door and inference
    av.logging.set_level(av.logging.PANIC)
    attempt = 0
    while True:
        out.put(("connecting", attempt))
        try:
            config.policy.check(config.url)
            got_frames = _read(config, out)
        except UrlNotAllowed as error:
            message, got_frames = str(error), False
        except (av.error.FFmpegError, OSError) as error:
            message, got_frames = _describe(error), False
        except _Ended as ended:
            message, got_frames = str(ended), ended.got_frames
        else:
            message = "the stream ended"
        attempt = 1 if got_frames else attempt + 1
        wait = backoff(attempt, config.reconnect_min_s, config.reconnect_max_s)
        out.put(("error", message, wait))
        time.sleep(wait)


class _Ended(Exception):
    def __init__(self, message: str, got_frames: bool) -> None:
        super().__init__(message)
        self.got_frames = got_frames


def _open(config: SourceConfig) -> av.container.InputContainer:
    options = {
        # Find the stream's parameters in at most PROBE_S of it (FFmpeg's default is 5 s).
        "analyzeduration": str(int(PROBE_S * 1e6)),
        "probesize": "1000000",
        "fflags": "nobuffer",
    }
    if config.url.lower().startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = "tcp"
    return av.open(
        config.url,
        "r",
        options=options,
        # Opening reads PROBE_S of the stream, which a live source sends in real time.
        timeout=(config.connect_timeout_s + PROBE_S, config.read_timeout_s),
    )


def _read(config: SourceConfig, out: Any) -> bool:
    """One connection: decode and send sampled frames until the stream ends or fails."""
    got_frames = False
    with _open(config) as container:
        if not container.streams.video:
            raise _Ended("the stream has no video", got_frames)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 1
        recipe = config.recipe
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else FALLBACK_FPS
        period = (
            config.window_s / recipe.clip_len if config.window_s else recipe.frame_interval / fps
        )
        intra_only = bool(stream.codec_context.codec.properties & 1)  # AV_CODEC_PROP_INTRA_ONLY
        converter: FrameConverter | None = None
        size = (0, 0)
        least: float | None = None  # the smallest arrival - stream time: the source's delay
        skipping = False
        next_at: float | None = None
        read = dropped = 0
        stats_at = time.monotonic() + STATS_EVERY_S
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as error:  # lost, timed out
                raise _Ended(_describe(error), got_frames) from None
            if packet.size == 0:
                continue
            if skipping:
                if not packet.is_keyframe:
                    read, dropped = read + 1, dropped + 1
                    continue
                skipping = False  # caught up: decoding starts again at a keyframe
            if intra_only and _before(packet, next_at, period):
                read += 1
                continue  # a frame the windows do not sample: not even decoded
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # one damaged packet: the decoder resynchronises
            for frame in frames:
                read += 1
                if frame.time is None:
                    continue
                t = float(frame.time)
                # Behind real time (a decoder slower than the source): skip to a keyframe.
                delay = time.time() - t
                least = delay if least is None else min(least, delay)
                if delay - least > config.max_lag_s:
                    skipping, least = True, None
                    dropped += 1
                    break
                if converter is None or (frame.height, frame.width) != size:
                    converter = _converter(frame, recipe)  # the first frame, or a new size
                    size = (frame.height, frame.width)
                    live = {"fps": fps, "period_s": period, "frame_size": size}
                    out.put(("live", {**live, "codec": stream.codec_context.name}))
                    got_frames = True
                if next_at is not None and t < next_at - period / 2:
                    continue
                if next_at is None or t > next_at + 2 * period:
                    next_at = t  # the first frame, or after a jump: restart the grid
                next_at += period
                try:
                    out.put_nowait(("frame", t, time.time(), converter(frame)))
                except queues.Full:
                    dropped += 1
            now = time.monotonic()
            if now >= stats_at:
                out.put(("stats", read, dropped))
                read = dropped = 0
                stats_at = now + STATS_EVERY_S
    raise _Ended("the stream ended", got_frames)


def _before(packet: av.Packet, next_at: float | None, period: float) -> bool:
    """Whether the packet's frame comes before the next sample is due."""
    if next_at is None or packet.pts is None or not packet.time_base:
        return False
    return float(packet.pts * packet.time_base) < next_at - period / 2


def _converter(frame: av.VideoFrame, recipe: Recipe) -> FrameConverter:
    """Cut and resize as the recipe's centre crop (the `fast` profile's one view)."""
    prescaled, size = frame_geometry((frame.height, frame.width), recipe)
    plan = ViewPlan(
        clips=(),
        crops=crop_boxes(size, recipe.crop_size, 1, recipe.crop_rule),
        frame_size=size,
        rotation=0,
        num_frames=0,
        duration_s=0.0,
        prescaled_size=prescaled,
    )
    return FrameConverter(plan, recipe)


def _describe(error: Exception) -> str:
    text = str(error)
    if isinstance(error, av.error.FFmpegError) and error.filename:
        text = text.replace(error.filename, redact(error.filename))
    return text
