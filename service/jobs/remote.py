"""Jobs' inputs and outputs by URI: object stores through fsspec (`s3://`, `gs://`, `az://`)
and `https://`, behind the operator's allow-lists.

    remote = RemoteFiles(settings, jobs_dir)
    remote.register(resolvers)               # the input schemes, in service/jobs/inputs.py
    remote.check_output("s3://results/run-7/")
    remote.write_results(job, summary, plan, spec)   # results.json (+ windows.parquet)

Safe by default:
- a URI is fetched only when it matches a URL pattern of ACTSERVE_JOBS_ALLOWED_INPUTS (none
  by default: jobs fetch nothing), and written only under a pattern of
  ACTSERVE_JOBS_ALLOWED_OUTPUTS;
- for `http(s)://` the host's addresses must be public, or in a network the allow-list
  names (service/net_policy.py), checked again at every redirect, which is followed here, a
  hop at a time, never by the HTTP client;
- the size is read at submit (Content-Length, the object's size): over ACTSERVE_JOBS_MAX_INPUT_BYTES
  is a 413; a download that grows past it is cut;
- credentials come from the environment and the cloud's usual chain (AWS_*, a workload
  identity, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*), never from the request; the operator
  points `s3://` at another endpoint with AWS_ENDPOINT_URL.

A download goes to <jobs dir>/fetched/<job id> (written as `.part`, renamed once complete,
so a resumed job reuses it), read in blocks (object stores read by range); it is tried
`fetch_attempts` times with exponential backoff, then the job fails with
`remote_unavailable` (or the refusal: `url_not_allowed`, `upload_too_large`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from model_store import ModelSpec
from service.errors import BadRequest, RemoteUnavailable, UploadTooLarge, UrlNotAllowed
from service.jobs.inputs import InputResolvers, Resolver
from service.jobs.queue import Chunk, Job
from service.jobs.results import page, window_rows
from service.jobs.serving import WindowPlan, top_labels
from service.jobs.settings import JobSettings
from service.net_policy import UrlPolicy, redact

logger = logging.getLogger("actserve.jobs")

#: URI scheme → the fsspec protocol (and the package that brings it).
OBJECT_STORES = {"s3": ("s3", "s3fs"), "gs": ("gcs", "gcsfs"), "az": ("az", "adlfs")}
HTTP = ("https", "http")
MAX_REDIRECTS = 5
BLOCK = 8 * 2**20
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
FIRST_RETRY_S = 0.5

T = TypeVar("T")


class Transient(Exception):
    """A failure worth another try (a 5xx or 429, a dropped connection)."""


class RemoteFiles:
    def __init__(
        self,
        settings: JobSettings,
        jobs_dir: Path,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.fetched = jobs_dir / "fetched"
        self.fetched.mkdir(parents=True, exist_ok=True)
        self.inputs = _patterns(settings.allowed_inputs)
        self.outputs = _patterns(settings.allowed_outputs)
        self.http_policy = UrlPolicy.parse(
            settings.allowed_inputs, schemes=HTTP, setting="ACTSERVE_JOBS_ALLOWED_INPUTS"
        )
        self.max_bytes = settings.max_input_bytes
        self._sleep = sleep

    def register(self, resolvers: InputResolvers) -> None:
        resolver = Resolver(self.check, self.fetch, self.discard)
        for scheme in (*OBJECT_STORES, *HTTP):
            resolvers.register(scheme, resolver)

    # ------------------------------------------------------------------ inputs

    def check(self, uri: str) -> int:
        """At submit: the URI is allowed, the object exists and is not too large; its size."""
        self._allowed(uri, self.inputs, "ACTSERVE_JOBS_ALLOWED_INPUTS")
        try:
            size = self._size(uri)
        except (UrlNotAllowed, UploadTooLarge, BadRequest):
            raise
        except (RemoteUnavailable, FileNotFoundError, PermissionError) as error:
            raise BadRequest(f"{redact(uri)}: {error}") from None
        except Exception as error:  # a passing failure: the run's download retries it
            logger.warning("%s: size unknown at submit (%s)", redact(uri), error)
            size = None
        if size is not None and size > self.max_bytes:
            raise self._too_large(uri, size)
        return max(size or 0, 1)  # > 0: the sweep removes its download if a process dies

    def fetch(self, job: Job) -> Path:
        """The job's video on local disk, downloaded unless a previous run completed it."""
        target = self.fetched / job.id
        return target if target.is_file() else self.download(job.input_ref, target)

    def download(self, uri: str, target: Path) -> Path:
        """Fetch an allowed URI to `target` (whole, or not at all), retrying."""
        self._allowed(uri, self.inputs, "ACTSERVE_JOBS_ALLOWED_INPUTS")
        part = target.with_name(target.name + ".part")
        try:
            self._retrying(uri, lambda: self._download(uri, part))
            part.replace(target)
        finally:
            part.unlink(missing_ok=True)
        return target

    def list(self, prefix: str, keep: Callable[[str], bool]) -> list[str]:
        """The URIs of the objects under an allowed object-store prefix that `keep` keeps
        (an `https://` URI names one video: itself)."""
        self._allowed(prefix, self.inputs, "ACTSERVE_JOBS_ALLOWED_INPUTS")
        scheme = urlsplit(prefix).scheme
        if scheme in HTTP:
            return [prefix]
        filesystem, path = self._filesystem(prefix)
        found = self._retrying(prefix, lambda: filesystem.find(path))
        return [f"{scheme}://{name}" for name in sorted(found) if keep(name)]

    def discard(self, job: Job) -> None:
        (self.fetched / job.id).unlink(missing_ok=True)

    # ------------------------------------------------------------------ outputs

    def check_output(self, uri: str, *, parquet: bool = False) -> None:
        if parquet and importlib.util.find_spec("pyarrow") is None:
            raise BadRequest("output_parquet needs pyarrow on the server (the parquet extra)")
        if urlsplit(uri).scheme not in OBJECT_STORES:
            raise BadRequest(
                f"output_uri {redact(uri)!r}: results are written to object stores "
                f"({', '.join(s + '://' for s in OBJECT_STORES)})"
            )
        self._allowed(uri, self.outputs, "ACTSERVE_JOBS_ALLOWED_OUTPUTS")
        self._filesystem(uri)

    def write(self, uri: str, files: dict[str, bytes]) -> None:
        """Write each file under the `uri` prefix (retried like a fetch)."""
        self.check_output(uri)
        for name, data in files.items():
            target = uri.rstrip("/") + "/" + name
            self._retrying(target, lambda t=target, d=data: self._put(t, d))

    def write_results(
        self, job: Job, plan: WindowPlan, summary: dict[str, Any], chunks: Iterable[Chunk], spec
    ) -> None:
        """A succeeded job's answer, written under its `output_uri`."""
        job = replace(job, plan=plan.as_json(), windows_total=len(plan.windows))
        parquet = bool(job.request.get("output_parquet"))
        files = results_files(job, summary, list(chunks), spec, parquet=parquet)
        self.write(job.request["output_uri"], files)

    # ------------------------------------------------------------------ the work

    def _allowed(self, uri: str, patterns: tuple[str, ...], setting: str) -> None:
        scheme = urlsplit(uri).scheme.lower()
        if scheme not in OBJECT_STORES and scheme not in HTTP:
            raise BadRequest(f"{redact(uri)!r}: no resolver for scheme {scheme!r}")
        if not patterns:
            raise UrlNotAllowed(f"jobs take no URIs on this server: {setting} is empty")
        if not any(fnmatch.fnmatchcase(_normalised(uri), p) for p in patterns):
            raise UrlNotAllowed(f"{redact(uri)} matches no pattern of {setting}")

    def _size(self, uri: str) -> int | None:
        if urlsplit(uri).scheme in HTTP:
            with self._http(uri) as response:
                declared = response.headers.get("content-length", "")
                return int(declared) if declared.isdigit() else None
        filesystem, path = self._filesystem(uri)
        try:
            info = filesystem.info(path)
        except FileNotFoundError:
            raise RemoteUnavailable(f"no object at {redact(uri)}") from None
        if info.get("type") == "directory":
            raise RemoteUnavailable(f"{redact(uri)} is a folder, not a video")
        return int(info["size"]) if info.get("size") is not None else None

    def _download(self, uri: str, part: Path) -> None:
        if urlsplit(uri).scheme in HTTP:
            with self._http(uri) as response, part.open("wb") as out:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(uri, int(declared))
                self._copy(uri, response.iter_bytes(BLOCK), out)
            return
        size = self._size(uri)
        if size is not None and size > self.max_bytes:
            raise self._too_large(uri, size)
        filesystem, path = self._filesystem(uri)
        with filesystem.open(path, "rb", block_size=BLOCK) as source, part.open("wb") as out:
            self._copy(uri, iter(lambda: source.read(BLOCK), b""), out)

    def _copy(self, uri: str, blocks: Iterator[bytes], out: Any) -> None:
        written = 0
        for block in blocks:
            written += len(block)
            if written > self.max_bytes:
                raise self._too_large(uri, written, cut=True)
            out.write(block)

    @contextlib.contextmanager
    def _http(self, uri: str) -> Iterator[httpx.Response]:
        """GET `uri`, following redirects a hop at a time, each hop's address checked."""
        url = uri
        with httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                self.http_policy.check(url)
                try:
                    with client.stream("GET", url) as response:
                        if response.is_redirect and "location" in response.headers:
                            url = urljoin(url, response.headers["location"])
                            continue
                        if response.status_code == 429 or response.status_code >= 500:
                            raise Transient(f"{redact(url)} answered {response.status_code}")
                        if response.status_code >= 400:
                            raise RemoteUnavailable(
                                f"{redact(url)} answered {response.status_code}"
                            )
                        yield response
                        return
                except httpx.HTTPError as error:
                    raise Transient(f"{redact(url)}: {error!r}") from error
        raise RemoteUnavailable(f"{redact(uri)}: more than {MAX_REDIRECTS} redirects")

    def _put(self, uri: str, data: bytes) -> None:
        filesystem, path = self._filesystem(uri)
        with filesystem.open(path, "wb") as out:
            out.write(data)

    def _filesystem(self, uri: str) -> tuple[Any, str]:
        import fsspec  # fsspec imports its backends lazily; so do we

        protocol, package = OBJECT_STORES[urlsplit(uri).scheme]
        try:
            filesystem = fsspec.filesystem(protocol, skip_instance_cache=True)
        except ImportError:
            raise BadRequest(
                f"{redact(uri)!r} needs {package}, which this server lacks (pip install {package})"
            ) from None
        return filesystem, filesystem._strip_protocol(uri)

    def _retrying(self, uri: str, work: Callable[[], T], *, attempts: int | None = None) -> T:
        """`work()`, tried again after a transient failure with exponential backoff."""
        attempts = attempts or self.settings.fetch_attempts
        for attempt in range(1, attempts + 1):
            try:
                return work()
            except (UrlNotAllowed, UploadTooLarge, RemoteUnavailable, BadRequest):
                raise
            except (FileNotFoundError, PermissionError) as error:
                raise RemoteUnavailable(f"{redact(uri)}: {error}") from None
            except Exception as error:  # Transient, OSError, the backends' own errors
                if attempt == attempts:
                    raise RemoteUnavailable(
                        f"{redact(uri)}: failed {attempts} times; last: {error}"
                    ) from None
                wait = FIRST_RETRY_S * 2 ** (attempt - 1)
                logger.warning("%s: %s; trying again in %.1f s", redact(uri), error, wait)
                self._sleep(random.uniform(wait / 2, wait))
        raise AssertionError("unreachable")

    def _too_large(self, uri: str, size: int, cut: bool = False) -> UploadTooLarge:
        how = "grew past" if cut else "is"
        return UploadTooLarge(
            f"{redact(uri)} {how} {size:,} bytes; ACTSERVE_JOBS_MAX_INPUT_BYTES is "
            f"{self.max_bytes:,}",
            limit=self.max_bytes,
        )


def _patterns(entries: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_normalised(e) for e in entries if "://" in e)


def _normalised(url: str) -> str:
    """Scheme and host in lower case, user info dropped (what patterns are matched on)."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{netloc.rpartition('@')[2].lower()}{slash}{path}"


def results_files(
    job: Job, summary: dict[str, Any], chunks: list[Chunk], spec: ModelSpec, *, parquet: bool
) -> dict[str, bytes]:
    """`results.json` (the whole answer: GET /jobs/{id}/results with every window) and, when
    asked, `windows.parquet` (a row per window)."""
    done = replace(job, summary=summary)
    top_k = min(int(job.request.get("top_k", 5)), spec.num_classes)
    total = job.windows_total or 0
    answer = page(done, chunks, spec, top_k=top_k, offset=0, limit=max(total, 1))
    files = {"results.json": answer.model_dump_json(exclude={"page"}).encode()}
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        plan = WindowPlan.from_json(job.plan or {})
        rows: list[dict[str, Any]] = []
        for chunk in chunks:
            for window, probabilities, embedding in window_rows(chunk):
                labels = top_labels(probabilities, spec, top_k)
                start, end = plan.windows[window]
                rows.append(
                    {
                        "window": window,
                        "start_s": start,
                        "end_s": end,
                        "labels": [s.label for s in labels],
                        "scores": [s.score for s in labels],
                        "embedding": embedding.astype(float).tolist()
                        if "embeddings" in job.request["features"]
                        else None,
                    }
                )
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows), sink)
        files["windows.parquet"] = sink.getvalue().to_pybytes()
    return files
