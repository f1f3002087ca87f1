"""Print the walk of one POST /classify request through service/: the files its code enters,
in order, as a profiler sees it (the decode worker's process is not traced).

    python scripts/request_walk.py

The service runs in this process on the bundled demo model (TestClient: no sockets, so the
HTTP server's own protocol class is not on the path); the video is made here.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.service.video.media import write_video  # noqa: E402

SERVICE = str(ROOT / "service") + "/"


def main() -> None:
    steps: list[str] = []
    recording = threading.Event()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or not recording.is_set():
            return
        file = frame.f_code.co_filename
        if file.startswith(SERVICE):
            name = "service/" + file.removeprefix(SERVICE)
            if not steps or steps[-1] != name:
                steps.append(name)

    threading.setprofile(profile)
    sys.setprofile(profile)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "clip.mp4", num_frames=60, size=(160, 120))
        with TestClient(create_app(Settings(decode_workers=1))) as client:
            with video.open("rb") as body:
                data = body.read()
            client.post("/classify", files={"video": ("clip.mp4", data, "video/mp4")})  # warm
            recording.set()
            response = client.post("/classify", files={"video": ("clip.mp4", data, "video/mp4")})
            recording.clear()
    sys.setprofile(None)
    threading.setprofile(None)
    assert response.status_code == 200, response.text
    seen: set[str] = set()
    for number, name in enumerate(steps, 1):
        mark = "back to" if name in seen else "enter  "
        print(f"{number:3d} {mark} {name}")
        seen.add(name)
    print(f"{len(seen)} files, {len(steps)} steps, {len(steps) - len(seen)} returns")


if __name__ == "__main__":
    main()
