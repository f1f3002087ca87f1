"""An RTSP server for `benchmarks/streams.py --source rtsp`: GStreamer's RTSP server
(gst-rtsp-server), one mount per camera, each relaying the MPEG-TS that a publisher (`ffmpeg
-re ... -f mpegts udp://127.0.0.1:PORT`) sends it on a loopback UDP port, as RTP H.264 over
RTSP. A mount's pipeline starts with its first player and is shared by every player.

    /usr/bin/python3 benchmarks/rtsp_server.py cam0=50000 cam1=50001

prints the RTSP port it listens on (127.0.0.1, chosen by the system), then serves until it is
terminated; `--check` only says (exit status 1, and on stderr) what GStreamer lacks.
It runs under the system's python3, whose `gi` (python3-gi) reaches GStreamer:

    apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 \\
        gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
"""

from __future__ import annotations

import signal
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as error:
    sys.exit(f"GStreamer's RTSP server from python3 ({error})")

# The relay: no decoding, no re-encoding. h264parse hands the payloader whole frames (x264
# writes several slices per frame) with SPS/PPS re-sent at the head of every keyframe, so a
# player joining mid-stream starts at the next one. (SPS/PPS inserted by the payloader too
# land between a keyframe's slices, and FFmpeg 7's parser then cuts the frame in two: every
# picture until the next keyframe decodes half grey.) tsdemux's default latency (700 ms, for
# jittery networks) would hold every frame that long on loopback.
PIPELINE = (
    "( udpsrc address=127.0.0.1 port={port} buffer-size=8388608 "
    'caps="video/mpegts,systemstream=(boolean)true" '
    "! tsdemux latency=50 ! h264parse config-interval=-1 "
    "! video/x-h264,stream-format=avc,alignment=au "
    "! rtph264pay name=pay0 pt=96 )"
)


ELEMENTS = {
    "udpsrc": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "tsdemux": "gstreamer1.0-plugins-bad",
    "h264parse": "gstreamer1.0-plugins-bad",
}


def main(mounts: list[str]) -> None:
    Gst.init(None)
    missing = [f"{e} ({p})" for e, p in ELEMENTS.items() if Gst.ElementFactory.find(e) is None]
    if missing:
        sys.exit(f"GStreamer elements {', '.join(missing)}")
    if mounts == ["--check"]:
        return
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    points = server.get_mount_points()
    for mount in mounts:
        name, port = mount.split("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(PIPELINE.format(port=int(port)))
        factory.set_shared(True)
        points.add_factory(f"/{name}", factory)
    server.attach(None)
    print(server.get_bound_port(), flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    loop.run()


if __name__ == "__main__":
    main(sys.argv[1:])
