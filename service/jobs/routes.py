"""/jobs: submit a video as a durable job, follow it, read its results, cancel it.

POST   /jobs                   202 + Location: /jobs/{id}   (multipart video, or JSON)
GET    /jobs?state=&offset=&limit=                          newest first
GET    /jobs/{id}              state, progress, ETA, the error
GET    /jobs/{id}/results      a page of windows, or all of them as JSON Lines
DELETE /jobs/{id}              cancel (409 once finished)
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from service.deps import AliasQuery, ClientDep, EngineDep, ModelQuery, VersionQuery
from service.errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    LimitExceeded,
    NotReady,
    Overloaded,
)
from service.jobs.queue import Job, JobState, NewJob
from service.jobs.results import FEATURES, json_lines, page
from service.jobs.schemas import (
    JobError,
    JobList,
    JobProgress,
    JobRequest,
    JobResults,
    JobStatus,
    WebhookStatus,
    timestamp,
)
from service.jobs.service import Jobs
from service.routes.common import VIDEO_ERRORS, ProfileQuery, video_body
from service.schemas import ErrorResponse
from service.upload import VIDEO_FIELD, read_body, receive_uploads

router = APIRouter(prefix="/jobs", tags=["jobs"])

JSON_LINES = "application/x-ndjson"
#: A JSON job body is small: an input URI and a few options.
MAX_JSON_BYTES = 64 * 1024
JOB_ERRORS = {
    404: {"model": ErrorResponse, "description": "No such job (or past its retention)."},
    409: {"model": ErrorResponse, "description": "The job is not in a state that allows it."},
}


def jobs_of(request: Request) -> Jobs:
    jobs = getattr(request.app.state, "jobs", None)
    if isinstance(jobs, str):
        raise NotReady(f"jobs are off on this server: {jobs}")
    if jobs is None:
        raise NotReady("jobs are not available (the server is starting or stopping)")
    return jobs


def status_of(job: Job, webhook: dict | None = None) -> JobStatus:
    total, done = job.windows_total, job.windows_done
    eta = None
    if job.state == JobState.RUNNING and total and job.run_started_at is not None:
        since = done - job.run_windows_from
        elapsed = time.time() - job.run_started_at
        if since > 0 and elapsed > 0:
            eta = (total - done) * elapsed / since
    return JobStatus(
        id=job.id,
        state=job.state.value,  # type: ignore[arg-type]
        model=job.model,
        version=job.version,
        features=job.request["features"],
        progress=JobProgress(
            windows_done=done,
            windows_total=total,
            fraction=done / total if total else (1.0 if job.state == JobState.SUCCEEDED else 0.0),
            eta_s=eta,
        ),
        attempts=job.attempts,
        created_at=timestamp(job.created_at),  # type: ignore[arg-type]
        started_at=timestamp(job.started_at),
        finished_at=timestamp(job.finished_at),
        error=JobError(**job.error) if job.error and job.state == JobState.FAILED else None,
        results=f"/jobs/{job.id}/results" if job.state == JobState.SUCCEEDED else None,
        input_uri=job.input_ref if job.input_kind != "upload" else None,
        output_uri=job.request.get("output_uri"),
        webhook=WebhookStatus(**webhook) if webhook is not None else None,
    )


def accepted(job: Job) -> JSONResponse:
    return JSONResponse(
        status_of(job).model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/jobs/{job.id}"},
    )


def parse_features(text: str) -> list[str]:
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FEATURES]
    if unknown or not wanted:
        raise BadRequest(f"features: {', '.join(unknown) or 'none given'}; choose from {FEATURES}")
    return list(dict.fromkeys(wanted))


@router.post(
    "",
    status_code=202,
    response_model=JobStatus,
    responses={**VIDEO_ERRORS, 507: {"model": ErrorResponse, "description": "Jobs disk full."}},
    openapi_extra=video_body(VIDEO_FIELD),
)
async def submit_job(
    request: Request,
    engine: EngineDep,
    client: ClientDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
    alias: AliasQuery = None,
    profile: ProfileQuery = None,
    features: Annotated[
        str,
        Query(description=f"Comma-separated, of {', '.join(FEATURES)} (with an upload)."),
    ] = "labels,segments",
    top_k: Annotated[int, Query(ge=1, description="Classes per window and overall.")] = 5,
    segment_score: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
    webhook: Annotated[
        str | None,
        Query(max_length=2000, description="POSTed the job's status, signed, once it ends."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="A retried submit with the same key gets the same job."),
    ] = None,
) -> JSONResponse:
    """Submit a video (multipart field `video`, or a JSON body naming an input) as a job."""
    jobs = jobs_of(request)
    known = await asyncio.to_thread(jobs.queue.by_idempotency_key, idempotency_key)
    if known is not None:
        return accepted(known)
    settings = engine.settings
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await _json_body(request, settings)
        model, version, alias, profile = body.model, body.version, body.alias, body.profile
        wanted = list(dict.fromkeys(body.features))
        top_k, segment_score = body.top_k, body.segment_score
        webhook = body.webhook
        if body.output_uri is not None:
            await asyncio.to_thread(
                jobs.remote.check_output, body.output_uri, parquet=body.output_parquet
            )
    else:
        body, wanted = None, parse_features(features)
    if top_k > settings.max_top_k:
        raise BadRequest(f"top_k is {top_k}; ACTSERVE_MAX_TOP_K is {settings.max_top_k}")
    loaded = jobs.serving.resolve(model, version, alias)
    unfinished = await asyncio.to_thread(jobs.queue.unfinished)
    if unfinished >= jobs.settings.max_queued:
        raise Overloaded(
            f"{unfinished} jobs are queued or running (limit {jobs.settings.max_queued}, "
            "ACTSERVE_JOBS_MAX_QUEUED); retry later",
            retry_after=60,
        )
    if webhook is not None:
        await asyncio.to_thread(jobs.webhooks.check, webhook)
    job_request = {
        "profile": profile,
        "features": wanted,
        "top_k": top_k,
        "segment_score": segment_score,
    }
    if body is not None and body.output_uri is not None:
        job_request |= {"output_uri": body.output_uri, "output_parquet": body.output_parquet}
    if webhook is not None:
        job_request["webhook"] = webhook
    new = dict(
        request=job_request,
        model=loaded.manifest.name,
        version=loaded.manifest.version,
        idempotency_key=idempotency_key,
    )
    if body is not None:
        kind, size = await asyncio.to_thread(jobs.inputs.check, body.uri)
        if (local := jobs.inputs.local_path(kind, body.uri)) is not None:
            await _refuse_over_limits(jobs, local)
        job, created = await asyncio.to_thread(
            jobs.queue.submit,
            NewJob(**new, input_kind=kind, input_ref=body.uri, input_bytes=size),
        )
    else:
        job, created = await _submit_upload(request, engine, client, jobs, new)
    if created:
        jobs.runner.wake()
    return accepted(job)


async def _json_body(request: Request, settings) -> JobRequest:
    deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
    small = settings.model_copy(
        update={"video": settings.video.model_copy(update={"max_upload_bytes": MAX_JSON_BYTES})}
    )
    raw = await read_body(request, small, deadline=deadline)
    try:
        return JobRequest.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise BadRequest(problems) from None


async def _refuse_over_limits(jobs: Jobs, path) -> None:
    """Refuse at submit what would fail on a limit an hour later: the header's duration,
    frame size, frame count and streams, checked in a decode worker. Damage is the job's to
    find (it fails with the error the sync API gives)."""
    try:
        await jobs.serving.probe(path)
    except LimitExceeded:
        raise
    except Exception:
        return


async def _submit_upload(
    request: Request, engine, client: str, jobs: Jobs, new: dict
) -> tuple[Job, bool]:
    settings = engine.settings
    max_bytes = settings.video.max_upload_bytes
    declared = request.headers.get("content-length", "")
    incoming = int(declared) if declared.isdigit() else 0
    held = await asyncio.to_thread(jobs.queue.held_bytes)
    if held + min(incoming, max_bytes) > jobs.settings.max_disk_bytes:
        raise InsufficientStorage(
            f"the jobs directory holds {held:,} bytes of uploads (limit "
            f"{jobs.settings.max_disk_bytes:,}, ACTSERVE_JOBS_MAX_DISK_BYTES); retry once "
            "jobs have finished"
        )
    job_id = uuid.uuid4().hex
    target = jobs.inputs.upload_path(job_id)
    # received straight into the jobs directory, so that keeping it is a rename
    into_jobs = settings.model_copy(update={"upload_dir": jobs.inputs.uploads})
    loaded = jobs.serving.resolve(new["model"], new["version"])
    with engine.admit(loaded, client) as ticket:
        async with receive_uploads(
            request,
            (VIDEO_FIELD,),
            into_jobs,
            deadline=engine.deadline(),
            on_received=ticket.received,
        ) as uploads:
            upload = uploads[VIDEO_FIELD]
            await _refuse_over_limits(jobs, upload.path)
            os.replace(upload.path, target)  # the job's own file from now on
    try:
        job, created = await asyncio.to_thread(
            jobs.queue.submit,
            NewJob(
                **new, id=job_id, input_kind="upload", input_ref=job_id, input_bytes=upload.bytes
            ),
        )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if not created:  # the same key won a race meanwhile: its job, not ours
        target.unlink(missing_ok=True)
    return job, created


@router.get("", response_model=JobList)
async def list_jobs(
    request: Request,
    state_: Annotated[
        JobState | None, Query(alias="state", description="Only jobs in this state.")
    ] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    """Jobs, newest first, a page at a time."""
    jobs = jobs_of(request)
    found, total = await asyncio.to_thread(jobs.queue.list, state_, offset=offset, limit=limit)
    return JobList(
        jobs=[status_of(job) for job in found],
        total=total,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if offset + limit < total else None,
    )


@router.get("/{job_id}", response_model=JobStatus, responses=JOB_ERRORS)
async def get_job(request: Request, job_id: str) -> JobStatus:
    """A job's state, progress (windows done of total, ETA), error and webhook deliveries."""
    jobs = jobs_of(request)
    job = await asyncio.to_thread(jobs.queue.get, job_id)
    return status_of(job, await asyncio.to_thread(jobs.webhooks.status, job_id))


@router.get(
    "/{job_id}/results",
    response_model=JobResults,
    responses={
        **JOB_ERRORS,
        200: {"content": {JSON_LINES: {}}, "description": "A page, or JSON Lines (Accept)."},
    },
)
async def job_results(
    request: Request,
    job_id: str,
    offset: Annotated[int, Query(ge=0, description="First window of the page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=4096, description="Windows per page.")] = 256,
    top_k: Annotated[int | None, Query(ge=1, description="Default: the job's.")] = None,
    format: Annotated[
        str | None, Query(description="`jsonl` (or Accept: application/x-ndjson): stream it all.")
    ] = None,
):
    """A succeeded job's results: a page of windows with the whole-video answer, or every
    window as JSON Lines."""
    jobs = jobs_of(request)
    job = await asyncio.to_thread(jobs.queue.get, job_id)
    if job.state != JobState.SUCCEEDED:
        why = f": {job.error['message']}" if job.error and job.state == JobState.FAILED else ""
        raise Conflict(f"job {job_id} is {job.state}; results come once it succeeds{why}")
    spec = await asyncio.to_thread(jobs.serving.spec_of, job.model, job.version)
    k = min(top_k or int(job.request.get("top_k", 5)), spec.num_classes)
    if format == "jsonl" or JSON_LINES in request.headers.get("accept", ""):
        return StreamingResponse(
            json_lines(job, jobs.queue.chunks(job.id), spec, top_k=k), media_type=JSON_LINES
        )
    if format not in (None, "json"):
        raise BadRequest(f"format is json or jsonl; got {format!r}")
    return await asyncio.to_thread(
        lambda: page(
            job, jobs.queue.chunks(job.id, offset), spec, top_k=k, offset=offset, limit=limit
        )
    )


@router.delete("/{job_id}", response_model=JobStatus, responses=JOB_ERRORS)
async def cancel_job(request: Request, job_id: str) -> JobStatus:
    """Cancel a queued or running job: its decode stops within the chunk it is on, its
    upload is removed; 409 if it has already finished."""
    jobs = jobs_of(request)
    job = await asyncio.to_thread(jobs.queue.cancel, job_id)
    if not jobs.runner.interrupt(job_id):  # not running here: nothing else will need the file
        await asyncio.to_thread(jobs.inputs.discard, job)
        await asyncio.to_thread(jobs.queue.input_removed, job_id)
        await jobs.webhooks.finished(job)
    return status_of(job)
