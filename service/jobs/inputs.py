"""Where a job's video comes from, and what happens to it afterwards.

    upload   the multipart body of `POST /jobs`, kept as <jobs dir>/uploads/<job id>
             until the job finishes (then removed)
    file     `file:///...` in a JSON body: a file under one of ACTSERVE_JOBS_INPUT_DIRS
             (a mounted archive), read in place and never removed

A resolver for another scheme (object stores) registers itself in `InputResolvers` with
`fetch` (bring the video to a local path for the job's run) and `discard` (after the job).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from service.errors import BadRequest
from service.jobs.queue import Job


@dataclass(frozen=True)
class Resolver:
    """One input scheme: `check(uri)` at submit (→ the size to account, or an error),
    `fetch(job)` → a local path for the run, `discard(job)` once the job has finished."""

    check: Callable[[str], int]
    fetch: Callable[[Job], Path]
    discard: Callable[[Job], None]


class InputResolvers:
    def __init__(self, jobs_dir: Path, input_dirs: tuple[Path, ...] = ()) -> None:
        self.uploads = jobs_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.input_dirs = tuple(Path(os.path.realpath(d)) for d in input_dirs)
        self.schemes: dict[str, Resolver] = {
            "upload": Resolver(self._no_uri, self.upload_path, self._remove_upload),
            "file": Resolver(self._check_file, self._file_path, lambda job: None),
        }

    def register(self, scheme: str, resolver: Resolver) -> None:
        self.schemes[scheme] = resolver

    def upload_path(self, job: Job | str) -> Path:
        job_id = job.id if isinstance(job, Job) else job
        return self.uploads / job_id

    def scheme_of(self, uri: str) -> str:
        scheme = urlparse(uri).scheme
        if scheme not in self.schemes or scheme == "upload":
            known = ", ".join(s for s in self.schemes if s != "upload")
            raise BadRequest(
                f"no input resolver for {uri!r} (schemes: {known}); send a video as a "
                "multipart upload instead"
            )
        return scheme

    def check(self, uri: str) -> tuple[str, int]:
        """The scheme of a JSON body's input and the bytes it will hold on disk (0: none)."""
        scheme = self.scheme_of(uri)
        return scheme, self.schemes[scheme].check(uri)

    def local_path(self, scheme: str, uri: str) -> Path | None:
        """The file a URI names on this machine (probed at submit), None for remote ones."""
        return self._local(uri) if scheme == "file" else None

    def fetch(self, job: Job) -> Path:
        return self.schemes[job.input_kind].fetch(job)

    def discard(self, job: Job) -> None:
        resolver = self.schemes.get(job.input_kind)
        if resolver is not None:
            resolver.discard(job)

    # ------------------------------------------------------------------ the schemes

    def _no_uri(self, uri: str) -> int:  # uploads come as bodies, not URIs
        raise BadRequest("an upload is sent as the multipart body")

    def _remove_upload(self, job: Job) -> None:
        self.upload_path(job).unlink(missing_ok=True)

    def _check_file(self, uri: str) -> int:
        path = self._local(uri)
        if not path.is_file():
            raise BadRequest(f"{uri!r} is not a file")
        return 0

    def _file_path(self, job: Job) -> Path:
        return self._local(job.input_ref)

    def _local(self, uri: str) -> Path:
        """A file URI's path, if it lies inside an allowed input directory (symlinks and
        `..` resolved first)."""
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise BadRequest(f"file URIs name a local path; got host {parsed.netloc!r}")
        path = Path(os.path.realpath(unquote(parsed.path)))
        if not any(path.is_relative_to(root) for root in self.input_dirs):
            raise BadRequest(
                f"{uri!r} is outside the directories jobs may read (ACTSERVE_JOBS_INPUT_DIRS)"
            )
        return path
