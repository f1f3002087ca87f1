"""`actserve search` on an index on disk: a stored window's like, the listing, a delete, and
a clear refusal; no server and no decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from actserve.cli import app
from window_index import Space, WindowIndex, Windows

SPACE = Space("demo-actions", 1)  # the bundled store's model


def make_index(root: Path) -> None:
    index = WindowIndex(root)
    rng = np.random.default_rng(0)
    left, right = rng.standard_normal(128), rng.standard_normal(128)
    for video, first, second in (("a", left, right), ("b", right, left), ("c", left, left)):
        vectors = np.stack([first] * 3 + [second] * 3) + 0.05 * rng.standard_normal((6, 128))
        windows = Windows.of_video(video, np.arange(6) * 1.0, np.arange(1, 7) * 1.0, vectors)
        index.add_video(SPACE, video, windows, profile="fast")


def test_search_by_a_stored_window_lists_and_deletes(tmp_path: Path) -> None:
    make_index(tmp_path)
    runner = CliRunner()
    found = runner.invoke(
        app, ["search", "--index-dir", str(tmp_path), "--video", "a", "--at", "1.5", "--json"]
    )
    assert found.exit_code == 0, found.output
    body = json.loads(found.output)
    assert body["index"] == "demo-actions@1"
    # a's first half (0-3 s) is like b's second half and all of c: its own moment left out.
    moments = {(m["video_id"], m["start_s"], m["end_s"]) for m in body["moments"][:2]}
    assert moments == {("b", 3.0, 6.0), ("c", 0.0, 6.0)}
    listing = runner.invoke(app, ["search", "--index-dir", str(tmp_path), "--list"])
    assert listing.exit_code == 0 and "demo-actions" in listing.output and "18" in listing.output
    deleted = runner.invoke(app, ["search", "--index-dir", str(tmp_path), "--delete", "c"])
    assert deleted.exit_code == 0 and "removed 6 windows of c" in deleted.output
    missing = runner.invoke(
        app, ["search", "--index-dir", str(tmp_path), "--video", "c", "--at", "1"]
    )
    assert missing.exit_code == 1 and "no windows of video 'c'" in missing.output
    nothing = runner.invoke(app, ["search", "--index-dir", str(tmp_path)])
    assert nothing.exit_code == 1 and "nothing to search by" in nothing.output
