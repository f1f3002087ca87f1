"""Hostile uploads made from valid videos, for tests/service/test_fuzz.py and benchmarks/fuzz.py.

A case is a seed video (one per container × codec the bundled FFmpeg can write), a mutation
kind and an integer seed: `Case.apply(data)` is a pure function of the three, so the name a
failure prints (`mkv-vp9/resize/1234`) rebuilds the exact bytes. The mutations know the three
container layouts well enough to hit their structures, not only random bytes:

    ISO BMFF (mp4, mov)   boxes: 32-bit big-endian size (1 = 64-bit size follows), 4-char type
    Matroska (mkv, webm)  EBML elements: variable-length id and size (all ones = unknown)
    RIFF (avi)            chunks: 4-char id, 32-bit little-endian size, LIST/RIFF hold chunks

Kinds: bit flips anywhere or inside one structure, truncation, a structure zeroed, resized
(its size field set to 0, 1, a little off, or absurd), dropped or duplicated, an absurd value
(0, −1, 2^31, ...) written over a header field, an unknown codec tag (FOURCC or CodecID), and
every sample's duration set to 0 (all frames, keyframes included, at one timestamp).

`HOSTILE_REQUESTS` are malformed requests whatever the video: multipart boundaries, content
types, query values, request ids and bearer tokens a parser or a comparison may choke on.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.service.video import media

# ----------------------------------------------------------------------------- seed videos

#: FFmpeg encoder per codec, with a keyframe every 4 frames (so keyframe seeking matters).
ENCODERS = {
    "h264": ("libx264", "yuv420p", {"g": "4"}),
    "hevc": ("libx265", "yuv420p", {"x265-params": "keyint=4:min-keyint=4:log-level=none"}),
    "vp8": ("libvpx", "yuv420p", {"g": "4"}),
    "vp9": ("libvpx-vp9", "yuv420p", {"g": "4"}),
    "av1": ("libsvtav1", "yuv420p", {"g": "4"}),
    "mpeg4": ("mpeg4", "yuv420p", {"g": "4"}),
    "mjpeg": ("mjpeg", "yuvj420p", {}),
}
#: Every allowed container × codec pair that FFmpeg 8's muxers write (mov takes no VP8, VP9
#: or AV1; webm only VP8, VP9 and AV1; avi no HEVC).
SEEDS = (
    *(f"mp4-{c}" for c in ("h264", "hevc", "vp9", "av1", "mpeg4", "mjpeg")),
    *(f"mov-{c}" for c in ("h264", "hevc", "mpeg4", "mjpeg")),
    *(f"mkv-{c}" for c in ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg")),
    *(f"webm-{c}" for c in ("vp8", "vp9", "av1")),
    *(f"avi-{c}" for c in ("h264", "vp8", "vp9", "av1", "mpeg4", "mjpeg")),
)


def write_seed(name: str, directory: Path) -> Path:
    """Seed `name` ('mkv-vp9'): 16 frames of 64×48 at 8 fps, 2 s, painted frame indices."""
    container, codec = name.split("-")
    encoder, pix_fmt, options = ENCODERS[codec]
    path = directory / f"{codec}.{container}"
    media.write_video(
        path, codec=encoder, num_frames=16, fps=8, size=(64, 48), pix_fmt=pix_fmt, options=options
    )
    return path


# ----------------------------------------------------------------------------- structures


@dataclass(frozen=True)
class Span:
    """One box, element or chunk: where its header, size field and payload are."""

    path: str  # e.g. "moov/trak/mdia/minf/stbl/stsd"
    start: int
    size_at: int
    size_width: int
    size_format: str  # "be", "le" or "ebml"
    body: int
    end: int


BMFF_CONTAINERS = {
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex", b"moof",
    b"traf", b"sinf", b"schi",
}  # fmt: skip
#: Children start after a header: stsd (version, flags, entry count), meta (version, flags),
#: visual sample entries (78 bytes of fields: size, depth, compressor name...).
BMFF_OFFSET_CONTAINERS = {b"stsd": 8, b"meta": 4} | {
    kind: 78
    for kind in (b"avc1", b"avc3", b"hvc1", b"hev1", b"mp4v", b"vp09", b"av01", b"jpeg", b"mjpa")
}
EBML_MASTERS = {
    0x1A45DFA3: "EBML", 0x18538067: "Segment", 0x114D9B74: "SeekHead", 0x4DBB: "Seek",
    0x1549A966: "Info", 0x1654AE6B: "Tracks", 0xAE: "TrackEntry", 0xE0: "Video",
    0x1F43B675: "Cluster", 0xA0: "BlockGroup", 0x1C53BB6B: "Cues", 0xBB: "CuePoint",
    0xB7: "CueTrackPositions", 0x1254C367: "Tags", 0x7373: "Tag", 0x63C0: "Targets",
    0x67C8: "SimpleTag",
}  # fmt: skip
EBML_NAMES = EBML_MASTERS | {
    0x86: "CodecID", 0xB0: "PixelWidth", 0xBA: "PixelHeight", 0x2AD7B1: "TimestampScale",
    0x4489: "Duration", 0xE7: "Timestamp", 0xA3: "SimpleBlock", 0xA1: "Block",
    0x23E383: "DefaultDuration", 0xD7: "TrackNumber", 0x83: "TrackType", 0x63A2: "CodecPrivate",
    0xB3: "CueTime", 0xF1: "CueClusterPosition",
}  # fmt: skip


def spans(data: bytes) -> list[Span]:
    """Every structure the container's layout exposes, outermost first."""
    if data[:4] == b"RIFF":
        return list(_riff(data, 0, len(data), ""))
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return list(_ebml(data, 0, len(data), ""))
    return list(_bmff(data, 0, len(data), ""))


def _bmff(data: bytes, start: int, end: int, parent: str) -> Iterator[Span]:
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        body = at + 8
        if size == 1 and at + 16 <= end:
            size, body = struct.unpack_from(">Q", data, at + 8)[0], at + 16
        elif size == 0:
            size = end - at
        if size < body - at or at + size > end:
            return
        name = f"{parent}/{kind.decode('latin-1')}".lstrip("/")
        yield Span(name, at, at, 4, "be", body, at + size)
        if kind in BMFF_CONTAINERS:
            yield from _bmff(data, body, at + size, name)
        elif kind in BMFF_OFFSET_CONTAINERS:
            yield from _bmff(data, body + BMFF_OFFSET_CONTAINERS[kind], at + size, name)
        at += size


def _vint(data: bytes, at: int, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at `at`: (value, width), or None if malformed."""
    if at >= len(data) or data[at] == 0:
        return None
    width = 9 - data[at].bit_length()
    if at + width > len(data):
        return None
    value = data[at] if keep_marker else data[at] & (0xFF >> width)
    for byte in data[at + 1 : at + width]:
        value = value << 8 | byte
    return value, width


def _ebml(data: bytes, start: int, end: int, parent: str) -> Iterator[Span]:
    at = start
    while at < end:
        element = _vint(data, at, keep_marker=True)
        size = element and _vint(data, at + element[1], keep_marker=False)
        if not element or not size:
            return
        (ident, id_width), (length, size_width) = element, size
        body = at + id_width + size_width
        unknown = length == (1 << 7 * size_width) - 1
        stop = end if unknown else body + length
        if stop > end:
            return
        name = f"{parent}/{EBML_NAMES.get(ident, hex(ident))}".lstrip("/")
        yield Span(name, at, at + id_width, size_width, "ebml", body, stop)
        if ident in EBML_MASTERS:
            yield from _ebml(data, body, stop, name)
        at = stop


def _riff(data: bytes, start: int, end: int, parent: str) -> Iterator[Span]:
    at = start
    while at + 8 <= end:
        kind, size = struct.unpack_from("<4sI", data, at)
        stop = at + 8 + size
        if stop > end:
            return
        name = f"{parent}/{kind.decode('latin-1')}".lstrip("/")
        yield Span(name, at, at + 4, 4, "le", at + 8, stop)
        if kind in (b"RIFF", b"LIST") and size >= 4:
            name += f"[{data[at + 8 : at + 12].decode('latin-1')}]"
            yield from _riff(data, at + 12, stop, name)
        at = stop + (size & 1)


def _write_size(data: bytearray, span: Span, value: int) -> int:
    """Store `value` in a span's size field (clamped to what the field holds)."""
    bits = 7 * span.size_width if span.size_format == "ebml" else 8 * span.size_width
    value = max(0, min(value, (1 << bits) - 1))
    if span.size_format == "ebml":
        raw = (value | 1 << 7 * span.size_width).to_bytes(span.size_width, "big")
    else:
        raw = value.to_bytes(span.size_width, "big" if span.size_format == "be" else "little")
    data[span.size_at : span.size_at + span.size_width] = raw
    return value


# ----------------------------------------------------------------------------- mutations

ABSURD = (0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
CODEC_TAGS = {
    b"avc1", b"hvc1", b"hev1", b"vp09", b"av01", b"mp4v", b"jpeg", b"mjpa", b"H264", b"h264",
    b"VP80", b"VP90", b"AV01", b"FMP4", b"XVID", b"DIVX", b"MJPG",
}  # fmt: skip


def _bit_flips(data: bytearray, rng: random.Random, _: list[Span]) -> str:
    positions = sorted(rng.randrange(len(data)) for _ in range(rng.choice((1, 2, 8, 32))))
    for position in positions:
        data[position] ^= 1 << rng.randrange(8)
    return f"{len(positions)} bits flipped at {positions[:4]}{'…' if len(positions) > 4 else ''}"


def _flips_in(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    span = rng.choice(found)
    positions = [rng.randrange(span.start, span.end) for _ in range(rng.choice((1, 4, 16)))]
    for position in positions:
        data[position] ^= 1 << rng.randrange(8)
    return f"{len(positions)} bits flipped in {span.path}"


def _truncate(data: bytearray, rng: random.Random, _: list[Span]) -> str:
    keep = rng.randrange(1, len(data))
    del data[keep:]
    return f"truncated to {keep} bytes"


def _zero(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    span = rng.choice(found)
    data[span.body : span.end] = bytes(span.end - span.body)
    return f"{span.path} zeroed"


def _resize(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    span = rng.choice(found)
    old = span.end - span.start if span.size_format == "be" else span.end - span.body
    wanted = rng.choice((0, 1, 2, old - 1, old + 1, old - 8, old + 8, old * 2, 2**31, 2**32 - 1))
    new = _write_size(data, span, wanted)
    return f"{span.path} size {old} -> {new}"


def _drop(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    span = rng.choice(found)
    del data[span.start : span.end]
    return f"{span.path} removed"


def _duplicate(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    span = rng.choice(found)
    data[span.end : span.end] = data[span.start : span.end]
    return f"{span.path} duplicated"


def _absurd_field(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    headers = [s for s in found if s.end - s.body >= 4 and not _is_media(s)]
    span = rng.choice(headers or found)
    if span.end - span.body < 4:
        return _resize(data, rng, found)
    width = rng.choice((2, 4, 4, 8)) if span.end - span.body >= 8 else 4
    at = rng.randrange(span.body, span.end - width + 1)
    value = rng.choice(ABSURD) & ((1 << 8 * width) - 1)
    data[at : at + width] = value.to_bytes(width, rng.choice(("big", "little")))
    return f"{span.path}+{at - span.body} = {value:#x} ({width} bytes)"


def _codec_tag(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    """An unknown FOURCC where the codec is named (sample entry, strh/strf, CodecID)."""
    tag = bytes(rng.choice(b"QWXZqwxz") for _ in range(4))
    spots = [i for i in range(len(data) - 3) if bytes(data[i : i + 4]) in CODEC_TAGS]
    codec_ids = [s for s in found if s.path.endswith("CodecID")]
    if codec_ids and rng.random() < 0.7:
        span = rng.choice(codec_ids)
        data[span.body : span.end] = (b"V_" + tag * 8)[: span.end - span.body]
        return f"{span.path} = V_{tag.decode()}…"
    if not spots:
        return _bit_flips(data, rng, found)
    chosen = [s for s in spots if rng.random() < 0.5] or spots[:1]
    for spot in chosen:
        data[spot : spot + 4] = tag
    return f"codec tag -> {tag.decode()} at {chosen[:3]}"


def _same_timestamps(data: bytearray, rng: random.Random, found: list[Span]) -> str:
    """Every frame at one time: stts durations, Matroska block and cluster times zeroed."""
    changed = 0
    for span in found:
        if span.path.endswith("/stts") and span.end - span.body >= 8:
            entries = struct.unpack_from(">I", data, span.body + 4)[0]
            for e in range(min(entries, (span.end - span.body - 8) // 8)):
                struct.pack_into(">I", data, span.body + 12 + 8 * e, 0)
                changed += 1
        elif span.path.endswith(("Cluster/Timestamp", "CueTime")):
            data[span.body : span.end] = bytes(span.end - span.body)
            changed += 1
        elif span.path.endswith(("SimpleBlock", "BlockGroup/Block")):
            track = _vint(data, span.body, keep_marker=False)
            if track and span.body + track[1] + 2 <= span.end:
                data[span.body + track[1] : span.body + track[1] + 2] = b"\0\0"
                changed += 1
    if not changed:
        return _absurd_field(data, rng, found)
    return f"{changed} timestamps/durations zeroed"


def _is_media(span: Span) -> bool:
    return span.path.endswith(("mdat", "SimpleBlock", "Block", "00dc", "00db", "idx1"))


MUTATIONS = {
    "flip": _bit_flips,
    "flip-in": _flips_in,
    "truncate": _truncate,
    "zero": _zero,
    "resize": _resize,
    "drop": _drop,
    "duplicate": _duplicate,
    "absurd": _absurd_field,
    "codec-tag": _codec_tag,
    "same-time": _same_timestamps,
}


@dataclass(frozen=True)
class Case:
    seed_video: str
    kind: str
    seed: int

    @property
    def name(self) -> str:
        """What reproduces it: `Case.parse(name)`."""
        return f"{self.seed_video}/{self.kind}/{self.seed}"

    @classmethod
    def parse(cls, name: str) -> Case:
        seed_video, kind, seed = name.split("/")
        return cls(seed_video, kind, int(seed))

    def apply(self, original: bytes) -> tuple[bytes, str]:
        """The mutated bytes and what was done to them."""
        rng = random.Random(f"{self.name}")
        data = bytearray(original)
        found = spans(original) or [Span("file", 0, 0, 0, "be", 0, len(data))]
        description = MUTATIONS[self.kind](data, rng, found)
        return bytes(data), description


#: Cases the deeper corpus (benchmarks/fuzz.py) broke the contract with, kept in the suite.
FOUND = (
    "avi-vp8/flip/1581",  # a damaged AVI index: seeking raised EOFError (500)
)


def cases(count: int, *, first_seed: int = 0) -> list[Case]:
    """`count` cases, every seed video and mutation kind in turn, then by seed."""
    kinds = list(MUTATIONS)
    return [
        Case(SEEDS[i % len(SEEDS)], kinds[(i // len(SEEDS)) % len(kinds)], first_seed + i)
        for i in range(count)
    ]


# ----------------------------------------------------------------------------- requests


def classify(client: httpx.Client, data: bytes, name: str = "upload.bin") -> httpx.Response:
    files = {"video": (name, data, "application/octet-stream")}
    return client.post("/classify", params={"profile": "fast"}, files=files)


def problem(response: httpx.Response) -> str | None:
    """Why an answer breaks the contract: 200 with a result, or a 4xx whose JSON body has an
    error code and a message (None when it keeps it)."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:100]!r}"
    if response.status_code == 200:
        return None if "top_k" in body else f"200 without top_k: {body}"
    if not (isinstance(body, dict) and body.get("error") and body.get("message")):
        return f"{response.status_code} without an error and a message: {body}"
    return None


@dataclass(frozen=True)
class Outcome:
    case: Case
    description: str
    status: int | None  # None: no answer (connection dropped)
    error: str | None  # the body's error code
    problem: str | None


def send(client: httpx.Client, case: Case, seeds: dict[str, bytes]) -> Outcome:
    """Upload one case and judge the answer; a dropped connection is a problem too."""
    data, description = case.apply(seeds[case.seed_video])
    try:
        response = classify(client, data)
    except httpx.TransportError as exc:
        return Outcome(case, description, None, None, f"no answer: {type(exc).__name__} {exc}")
    try:
        error = response.json().get("error") if response.status_code != 200 else None
    except (ValueError, AttributeError):
        error = None
    return Outcome(case, description, response.status_code, error, problem(response))


def _multipart(boundary: bytes, data: bytes, disposition: bytes = b'name="video"') -> bytes:
    return (
        b"--" + boundary + b"\r\nContent-Disposition: form-data; " + disposition
        + b"\r\nContent-Type: video/mp4\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )  # fmt: skip


def _form(boundary: bytes, body: bytes | None = None) -> dict:
    content = body if body is not None else _multipart(boundary, b"not a video")
    headers = {"content-type": b"multipart/form-data; boundary=" + boundary}
    return {"headers": headers, "content": content}


#: Requests a client can send whatever the video: (method, path, httpx arguments).
HOSTILE_REQUESTS = {
    "boundary of 300 characters": ("POST", "/classify", _form(b"b" * 300)),
    "boundary of 70 characters (the RFC's most)": ("POST", "/classify", _form(b"b" * 70)),
    "boundary with non-ASCII bytes": ("POST", "/classify", _form(b"\xe9\xff-boundary")),
    "boundary quoted and empty": ("POST", "/classify", _form(b'""')),
    "body without the closing boundary": (
        "POST", "/classify", _form(b"xyz", b"--xyz\r\nContent-Disposition: form-data; name=")
    ),
    "part without a name": (
        "POST", "/classify", _form(b"xyz", _multipart(b"xyz", b"data", b"filename=a.mp4"))
    ),
    "part headers in bytes that are not UTF-8": (
        "POST", "/classify",
        _form(b"xyz", _multipart(b"xyz", b"data", b'name="video"; filename="\xff\xfe.mp4"')),
    ),
    "content type with a broken parameter": (
        "POST", "/classify", {"headers": {"content-type": "multipart/form-data; boundary"}}
    ),
    "content type of 8 KB": (
        "POST", "/classify", {"headers": {"content-type": "video/" + "x" * 8000}, "content": b"x"}
    ),
    "request id in non-ASCII bytes": (
        "POST", "/classify",
        {"headers": {"content-type": "video/mp4", "x-request-id": b"\xe9\xff"}, "content": b"1"},
    ),
    "top_k absurd": ("POST", "/classify?top_k=99999999999999999999999", {"content": b"1"}),
    "version with non-ASCII digits": ("POST", "/classify?version=%D9%A1", {"content": b"1"}),
    "model name that climbs out": ("POST", "/classify?model=..%2F..%2Fetc", {"content": b"1"}),
    "alias of 4 KB": ("POST", "/classify?alias=" + "a" * 4096, {"content": b"1"}),
    "bearer token with non-ASCII bytes": (
        "POST", "/admin/reload", {"headers": {"authorization": b"Bearer \xc3\xa9t\xc3\xa9"}}
    ),
    "bearer token with latin-1 bytes": (
        "POST", "/admin/reload", {"headers": {"authorization": b"Bearer \xe9"}}
    ),
    "bearer token of 64 KB": (
        "POST", "/admin/reload", {"headers": {"authorization": "Bearer " + "t" * 60_000}}
    ),
    "models name with a NUL": ("GET", "/models/a%00b", {}),
    "models name of unicode digits": ("GET", "/models/%D9%A1", {}),
}  # fmt: skip
