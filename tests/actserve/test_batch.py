"""`actserve batch`: an archive with broken files runs to the end and lists them, each result
is what the service answers for the same file, and a stopped run resumes where it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from actserve.batch import FIELDS, BatchInputError, Results, key, list_inputs
from actserve.cli import app
from service.app import create_app
from service.settings import BUNDLED_STORE, Settings
from tests.s3_server import s3_server
from tests.service.conftest import post_video

GOOD = ("h264.mp4", "vp9.webm", "mjpeg.avi", "vfr.mp4")
BROKEN = {"random.bin": "not_a_video", "no_moov.mp4": "corrupt_video", "bomb.avi": "limit_exceeded"}


@pytest.fixture
def archive(videos, tmp_path: Path) -> Path:
    """Good videos in nested folders and broken ones posing as videos."""
    root = tmp_path / "archive"
    for i, name in enumerate(GOOD):
        target = root / f"day{i % 2}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(videos[name], target)
    for name in BROKEN:
        shutil.copy(videos[name], root / f"broken-{Path(name).stem}.mp4")
    (root / "notes.txt").write_text("not listed: not a video file name")
    return root


def run_batch(source: str | Path, out: Path, *extra: str):
    arguments = ["batch", str(source), "--model", "demo-actions", "--out", str(out)]
    arguments += ["--store", str(BUNDLED_STORE), "--workers", "2", *extra]
    return CliRunner().invoke(app, arguments)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_with_broken_files_finishes_and_lists_them(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    result = run_batch(archive, out, "--top-k", "3")
    assert result.exit_code == 0, result.output
    assert f"{len(GOOD)} videos classified, {len(BROKEN)} failed" in result.output
    rows = {Path(row["path"]).name: row for row in read_jsonl(out)}
    assert len(rows) == len(GOOD) + len(BROKEN) and all(
        set(r) == set(FIELDS) for r in rows.values()
    )
    for name in GOOD:
        row = rows[name]
        assert row["status"] == "ok" and (row["model"], row["version"]) == ("demo-actions", 1)
        assert len(row["top_k"]) == 3 and row["label"] == row["top_k"][0]["label"]
        assert row["views"] == 2 and row["error"] is None and row["embedding"] is None
    for name, code in BROKEN.items():
        row = rows[f"broken-{Path(name).stem}.mp4"]
        assert (row["status"], row["error"]) == ("error", code) and row["message"]


def test_results_equal_the_services_answers(archive: Path, tmp_path: Path) -> None:
    """Same pipeline, same numbers: a batch record is the /classify answer for that file."""
    out = tmp_path / "results.jsonl"
    assert run_batch(archive, out, "--embedding").exit_code == 0
    rows = {Path(row["path"]).name: row for row in read_jsonl(out)}
    with TestClient(create_app(Settings(decode_workers=1))) as client:
        for name in ("h264.mp4", "vp9.webm"):
            path = next(archive.rglob(name))
            served = post_video(client, path, embedding="true").json()
            ours, theirs = rows[name]["top_k"], served["top_k"]
            assert [e["label"] for e in ours] == [e["label"] for e in theirs]
            assert [e["score"] for e in ours] == pytest.approx([e["score"] for e in theirs])
            assert rows[name]["embedding"] == pytest.approx(served["embedding"]["values"])


def test_a_stopped_run_resumes_without_redoing_videos(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    listed = tmp_path / "some.txt"
    listed.write_text("# two videos first\narchive/day0/h264.mp4\n\narchive/day1/vp9.webm\n")
    assert run_batch(listed, out).exit_code == 0
    first = out.read_text()
    assert len(first.splitlines()) == 2
    out.write_text(first + '{"path": "cut short by a cra')  # a crash mid-line
    again = run_batch(archive, out)
    assert again.exit_code == 0, again.output
    assert "2 of 7 videos are already in" in again.output
    text = out.read_text()
    assert text.startswith(first)  # earlier records untouched
    rows = [json.loads(line) for line in text.splitlines() if line.startswith('{"path": "/')]
    names = sorted(Path(row["path"]).name for row in rows)
    assert len(names) == len(set(names)) == len(GOOD) + len(BROKEN)
    nothing_left = run_batch(archive, out)
    assert "7 of 7 videos are already in" in nothing_left.output
    assert out.read_text() == text


def test_parquet_output_is_rewritten_from_its_rows_and_the_journal(archive, tmp_path) -> None:
    out = tmp_path / "results.parquet"
    assert run_batch(f"{archive}/day0/*", out).exit_code == 0
    assert pq.read_table(out).num_rows == 2
    assert not (tmp_path / "results.parquet.partial.jsonl").exists()
    journal = tmp_path / "results.parquet.partial.jsonl"  # left by a crashed run
    journal.write_text(json.dumps({"path": key(archive / "day1" / "vp9.webm"), "status": "ok"}))
    result = run_batch(archive, out)
    assert result.exit_code == 0 and "3 of 7 videos are already in" in result.output
    table = pq.read_table(out)
    assert table.num_rows == 7 and table.column_names == list(FIELDS)
    assert not journal.exists()


def test_inputs_a_folder_a_glob_or_a_list(archive: Path, tmp_path: Path) -> None:
    from_folder = list_inputs(str(archive))
    assert len(from_folder) == 7 and all(p.suffix != ".txt" for p in from_folder)
    assert len(list_inputs(f"{archive}/**/*.webm")) == 1
    listing = tmp_path / "list.txt"
    listing.write_text("archive/day0/h264.mp4\narchive/day0/h264.mp4\n# comment\n")
    assert list_inputs(str(listing)) == [tmp_path / "archive/day0/h264.mp4"]
    with pytest.raises(BatchInputError, match="not a folder, a glob pattern or a list file"):
        list_inputs(str(tmp_path / "missing"))
    with pytest.raises(BatchInputError, match="names no videos"):
        list_inputs(f"{archive}/*.mov")
    with pytest.raises(BatchInputError, match=r"\.jsonl or \.parquet"):
        Results(tmp_path / "out.csv")
    refused = run_batch(archive, tmp_path / "out.csv")
    assert refused.exit_code == 1 and ".jsonl or .parquet" in refused.output
    arguments = ["batch", str(archive), "--model", "nope", "--out", str(tmp_path / "o.jsonl")]
    unknown = CliRunner().invoke(app, [*arguments, "--store", str(BUNDLED_STORE)])
    assert unknown.exit_code == 1 and "nope" in unknown.output


def test_inputs_by_uri_from_an_s3_prefix(videos, tmp_path: Path, monkeypatch) -> None:
    with s3_server("archive", "other") as s3:
        for name in ("h264.mp4", "vp9.webm", "no_moov.mp4"):
            s3.put_object(Bucket="archive", Key=f"2026/{name}", Body=videos[name].read_bytes())
        s3.put_object(Bucket="archive", Key="2026/notes.txt", Body=b"not a video")
        s3.put_object(Bucket="other", Key="h264.mp4", Body=videos["h264.mp4"].read_bytes())
        monkeypatch.setenv("ACTSERVE_JOBS_ALLOWED_INPUTS", "s3://archive/*")
        out = tmp_path / "results.jsonl"
        result = run_batch("s3://archive/2026/", out)
        assert result.exit_code == 0, result.output
        rows = {row["path"]: row for row in read_jsonl(out)}
        assert {p: r["status"] for p, r in rows.items()} == {
            "s3://archive/2026/h264.mp4": "ok",
            "s3://archive/2026/vp9.webm": "ok",
            "s3://archive/2026/no_moov.mp4": "error",
        }
        assert rows["s3://archive/2026/no_moov.mp4"]["error"] == "corrupt_video"
        refused = run_batch("s3://other/", tmp_path / "other.jsonl")
        assert refused.exit_code == 1 and "matches no pattern" in refused.output


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")  # Ray's own settings
def test_the_same_job_on_a_local_ray_instance(archive: Path, tmp_path: Path) -> None:
    """A real Ray instance (GCS, raylet, worker processes) started here: the records equal a
    local run's, broken files included."""
    ray = pytest.importorskip("ray")
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert run_batch(archive, local).exit_code == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        result = run_batch(archive, on_ray, "--ray", "--cpus-per-actor", "1")
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    assert f"{len(GOOD)} videos classified, {len(BROKEN)} failed" in result.output

    def summary(path: Path) -> dict[str, tuple]:
        return {
            row["path"]: (row["status"], row["label"], row["error"]) for row in read_jsonl(path)
        }

    assert summary(on_ray) == summary(local)


def test_index_keeps_every_window_and_actserve_search_finds_them(archive, tmp_path) -> None:
    from window_index import Space, WindowIndex

    out, index_dir = tmp_path / "results.jsonl", tmp_path / "index"
    result = run_batch(archive, out, "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert f"{len(GOOD)} videos classified, {len(BROKEN)} failed" in result.output
    index = WindowIndex(index_dir)
    videos = index.videos(Space("demo-actions", 1))
    assert sorted(Path(v).name for v in videos) == sorted(GOOD)  # broken ones: none stored
    assert f"indexed {sum(videos.values())} windows" in result.output
    ok = [row for row in read_jsonl(out) if row["status"] == "ok"]
    assert all(row["views"] == videos[row["path"]] for row in ok)  # one view a window (fast)
    first = sorted(videos)[0]
    found = CliRunner().invoke(
        app, ["search", "--index-dir", str(index_dir), "--video", first, "--at", "0.5", "--json"]
    )
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["index"] == "demo-actions@1"


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_retry_failed_runs_the_failed_videos_again(archive: Path, tmp_path: Path, suffix) -> None:
    out = tmp_path / f"results{suffix}"
    assert run_batch(f"{archive}/day0/*", out).exit_code == 0
    rows = read_jsonl(out) if suffix == ".jsonl" else pq.read_table(out).to_pylist()
    # A video that failed for a reason since fixed (a file still being copied, say).
    failed = next(row["path"] for row in rows if row["status"] == "ok")
    rows = [
        {**row, "status": "error", "error": "decode_timeout", "label": None, "top_k": None}
        if row["path"] == failed
        else row
        for row in rows
    ]
    if suffix == ".jsonl":
        out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(out)), out)
    assert "2 of 2 videos are already in" in run_batch(f"{archive}/day0/*", out).output
    again = run_batch(f"{archive}/day0/*", out, "--retry-failed")
    assert again.exit_code == 0, again.output
    assert "retrying 1 videos" in again.output and "2 videos classified, 0 failed" in again.output
    rows = read_jsonl(out) if suffix == ".jsonl" else pq.read_table(out).to_pylist()
    assert sorted(row["path"] for row in rows) == sorted({row["path"] for row in rows})
    assert all(row["status"] == "ok" for row in rows)
