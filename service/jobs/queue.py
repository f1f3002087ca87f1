"""The durable queue: jobs submitted, claimed under a lease, renewed by a heartbeat, finished.

Every write that a running job makes is guarded by its lease (`owner` and state `running`):
a process that lost its lease (it stalled past `lease_s`, or the job was cancelled) finds
its write refused and stops; so a job is never run by two processes at once, and a chunk is
never stored twice (its row's key is the job and chunk number as well).

Claiming takes the oldest queued job, or a running one whose lease lapsed (its process died):
on PostgreSQL with `SELECT ... FOR UPDATE SKIP LOCKED`, so replicas claiming at once take
different jobs without waiting; on SQLite the file's write lock serialises them. Either way
the claim is a compare-and-set on the row's state and lease.

The methods are blocking (SQLAlchemy's synchronous API); the runner and routes call them
through `asyncio.to_thread`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import Conflict, JobNotFound
from service.jobs.db import ChunkRow, JobRow, WebhookRow, connect


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class Job:
    """A snapshot of one job's row."""

    id: str
    state: JobState
    request: dict[str, Any]
    model: str
    version: int
    input_kind: str
    input_ref: str
    input_bytes: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    owner: str | None
    attempts: int
    run_started_at: float | None
    run_windows_from: int
    windows_total: int | None
    windows_done: int
    plan: dict[str, Any] | None
    summary: dict[str, Any] | None
    error: dict[str, Any] | None
    idempotency_key: str | None = None

    @classmethod
    def of(cls, row: JobRow) -> Job:
        return cls(
            id=row.id,
            state=JobState(row.state),
            request=dict(row.request),
            model=row.model,
            version=row.version,
            input_kind=row.input_kind,
            input_ref=row.input_ref,
            input_bytes=row.input_bytes,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            owner=row.owner,
            attempts=row.attempts,
            run_started_at=row.run_started_at,
            run_windows_from=row.run_windows_from,
            windows_total=row.windows_total,
            windows_done=row.windows_done,
            plan=row.plan,
            summary=row.summary,
            error=row.error,
            idempotency_key=row.idempotency_key,
        )


@dataclass(frozen=True)
class NewJob:
    """What a submit stores: the request, the resolved model version and the input."""

    request: dict[str, Any]
    model: str
    version: int
    input_kind: str
    input_ref: str
    input_bytes: int = 0
    idempotency_key: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Chunk:
    """One finished chunk's outputs, as stored."""

    number: int
    start: int
    stop: int
    logits: bytes
    embedding: bytes
    view_window: bytes
    frames_decoded: int
    warnings: list[str]
    video: dict[str, Any]
    shots: list[dict[str, Any]] | None = None  # the boundaries in its stretch (`shots`)


class JobQueue:
    def __init__(self, url: str, *, lease_s: float = 30.0, max_attempts: int = 5) -> None:
        self.engine: Engine = connect(url)
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._postgres = self.engine.dialect.name == "postgresql"

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return self._sessions()

    # ------------------------------------------------------------------ submit and read

    def submit(self, new: NewJob) -> tuple[Job, bool]:
        """Store a queued job; with an idempotency key already used, the job stored then
        (and False: nothing new was created)."""
        now = time.time()
        row = JobRow(
            id=new.id,
            state=JobState.QUEUED,
            idempotency_key=new.idempotency_key,
            request=new.request,
            model=new.model,
            version=new.version,
            input_kind=new.input_kind,
            input_ref=new.input_ref,
            input_bytes=new.input_bytes,
            created_at=now,
            attempts=0,
            run_windows_from=0,
            windows_done=0,
        )
        with self._session() as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                existing = self.by_idempotency_key(new.idempotency_key)
                if existing is None:
                    raise
                return existing, False
            return Job.of(row), True

    def by_idempotency_key(self, key: str | None) -> Job | None:
        if key is None:
            return None
        with self._session() as session:
            row = session.scalars(select(JobRow).where(JobRow.idempotency_key == key)).first()
            return Job.of(row) if row is not None else None

    def get(self, job_id: str) -> Job:
        with self._session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(f"no job {job_id!r} (unknown, or removed after retention)")
            return Job.of(row)

    def list(
        self, state: JobState | None = None, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[Job], int]:
        """Jobs newest first (optionally in one state), a page of them, and how many match."""
        where = [JobRow.state == state] if state is not None else []
        with self._session() as session:
            total = session.scalar(select(func.count()).select_from(JobRow).where(*where)) or 0
            rows = session.scalars(
                select(JobRow)
                .where(*where)
                .order_by(JobRow.created_at.desc(), JobRow.id)
                .offset(offset)
                .limit(limit)
            ).all()
            return [Job.of(row) for row in rows], total

    def counts(self) -> dict[JobState, int]:
        with self._session() as session:
            found = dict(
                session.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
            )
        return {state: int(found.get(state, 0)) for state in JobState}

    def oldest_queued_at(self) -> float | None:
        with self._session() as session:
            return session.scalar(
                select(func.min(JobRow.created_at)).where(JobRow.state == JobState.QUEUED)
            )

    def held_bytes(self) -> int:
        """Bytes of uploads on disk (a job's `input_bytes` is zeroed once its file is gone)."""
        with self._session() as session:
            total = select(func.coalesce(func.sum(JobRow.input_bytes), 0))
            return int(session.scalar(total.where(JobRow.input_kind == "upload")) or 0)

    def unfinished(self) -> int:
        with self._session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(JobRow)
                    .where(JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]))
                )
                or 0
            )

    def chunks(self, job_id: str, first_window: int = 0) -> Iterator[Chunk]:
        """The job's chunks in order, from the one holding `first_window`, read one at a time."""
        number = 0
        while True:
            with self._session() as session:
                row = session.scalars(
                    select(ChunkRow)
                    .where(
                        ChunkRow.job_id == job_id,
                        ChunkRow.number >= number,
                        ChunkRow.stop > first_window,
                    )
                    .order_by(ChunkRow.number)
                    .limit(1)
                ).first()
                if row is None:
                    return
                chunk = Chunk(
                    row.number,
                    row.start,
                    row.stop,
                    row.logits,
                    row.embedding,
                    row.view_window,
                    row.frames_decoded,
                    list(row.warnings),
                    dict(row.video),
                    None if row.shots is None else list(row.shots),
                )
            yield chunk
            number = chunk.number + 1

    def chunk_numbers(self, job_id: str) -> set[int]:
        with self._session() as session:
            return set(session.scalars(select(ChunkRow.number).where(ChunkRow.job_id == job_id)))

    # ------------------------------------------------------------------ cancel

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (409 once it has finished). The process running it
        notices at its next heartbeat (or at once, in this process: the runner's `interrupt`)."""
        now = time.time()
        with self._session() as session:
            result = session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]),
                )
                .values(state=JobState.CANCELLED, finished_at=now, lease_expires_at=None)
            )
            session.commit()
        job = self.get(job_id)
        if result.rowcount == 0:
            raise Conflict(f"job {job_id} has already finished ({job.state}); nothing to cancel")
        return job

    # ------------------------------------------------------------------ the runner's side

    def claim(self, owner: str) -> Job | None:
        """Take the oldest queued job, or one whose lease lapsed, for `owner`; None if none.
        A job taken `max_attempts` times already fails instead (`abandoned`)."""
        now = time.time()
        claimable = or_(
            JobRow.state == JobState.QUEUED,
            and_(JobRow.state == JobState.RUNNING, JobRow.lease_expires_at < now),
        )
        with self._session() as session:
            for _ in range(8):  # another process may take the candidate first
                query = select(JobRow.id, JobRow.attempts).where(claimable)
                query = query.order_by(JobRow.created_at).limit(1)
                if self._postgres:
                    query = query.with_for_update(skip_locked=True)
                found = session.execute(query).first()
                if found is None:
                    session.rollback()
                    return None
                job_id, attempts = found
                if attempts >= self.max_attempts:
                    session.execute(
                        update(JobRow)
                        .where(JobRow.id == job_id, claimable)
                        .values(
                            state=JobState.FAILED,
                            finished_at=now,
                            lease_expires_at=None,
                            error={
                                "error": "job_abandoned",
                                "status": 500,
                                "message": f"the job was started {attempts} times and never "
                                "finished (its process died or failed each time; "
                                "ACTSERVE_JOBS_MAX_ATTEMPTS)",
                            },
                        )
                    )
                    session.commit()
                    continue
                taken = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, claimable)
                    .values(
                        state=JobState.RUNNING,
                        owner=owner,
                        lease_expires_at=now + self.lease_s,
                        attempts=JobRow.attempts + 1,
                        started_at=func.coalesce(JobRow.started_at, now),
                        run_started_at=now,
                        run_windows_from=JobRow.windows_done,
                    )
                )
                session.commit()
                if taken.rowcount == 1:
                    return self.get(job_id)
            return None

    def _owned(self, job_id: str, owner: str) -> Any:
        return and_(JobRow.id == job_id, JobRow.owner == owner, JobRow.state == JobState.RUNNING)

    def heartbeat(self, job_id: str, owner: str) -> bool:
        """Renew the lease; False when it is lost (cancelled, or taken over)."""
        with self._session() as session:
            result = session.execute(
                update(JobRow)
                .where(self._owned(job_id, owner))
                .values(lease_expires_at=time.time() + self.lease_s)
            )
            session.commit()
            return result.rowcount == 1

    def set_plan(self, job_id: str, owner: str, plan: dict[str, Any], windows: int) -> bool:
        with self._session() as session:
            result = session.execute(
                update(JobRow)
                .where(self._owned(job_id, owner))
                .values(plan=plan, windows_total=windows)
            )
            session.commit()
            return result.rowcount == 1

    def add_chunk(self, job_id: str, owner: str, chunk: Chunk) -> bool:
        """Store a finished chunk and count its windows, in one transaction, if `owner`
        still holds the job."""
        with self._session() as session:
            result = session.execute(
                update(JobRow)
                .where(self._owned(job_id, owner))
                .values(
                    windows_done=JobRow.windows_done + (chunk.stop - chunk.start),
                    lease_expires_at=time.time() + self.lease_s,
                )
            )
            if result.rowcount != 1:
                session.rollback()
                return False
            session.add(
                ChunkRow(
                    job_id=job_id,
                    number=chunk.number,
                    start=chunk.start,
                    stop=chunk.stop,
                    logits=chunk.logits,
                    embedding=chunk.embedding,
                    view_window=chunk.view_window,
                    frames_decoded=chunk.frames_decoded,
                    warnings=chunk.warnings,
                    video=chunk.video,
                    shots=chunk.shots,
                    created_at=time.time(),
                )
            )
            try:
                session.commit()
            except IntegrityError:  # already stored: never twice
                session.rollback()
                return False
            return True

    def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        *,
        summary: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """End the job (succeeded or failed) if `owner` still holds it."""
        with self._session() as session:
            result = session.execute(
                update(JobRow)
                .where(self._owned(job_id, owner))
                .values(
                    state=state,
                    summary=summary,
                    error=error,
                    finished_at=time.time(),
                    lease_expires_at=None,
                )
            )
            session.commit()
            return result.rowcount == 1

    def release(self, job_id: str, owner: str, error: dict[str, Any]) -> bool:
        """Put a job back in the queue after a failure that was not its input's (it keeps its
        chunks; `max_attempts` bounds the retries)."""
        with self._session() as session:
            result = session.execute(
                update(JobRow)
                .where(self._owned(job_id, owner))
                .values(state=JobState.QUEUED, owner=None, lease_expires_at=None, error=error)
            )
            session.commit()
            return result.rowcount == 1

    # ------------------------------------------------------------------ retention

    def finished_before(self, moment: float, limit: int = 100) -> list[Job]:
        with self._session() as session:
            rows = session.scalars(
                select(JobRow)
                .where(JobRow.state.in_(list(FINISHED)), JobRow.finished_at < moment)
                .limit(limit)
            ).all()
            return [Job.of(row) for row in rows]

    def finished_with_input(self, limit: int = 100) -> list[Job]:
        """Finished jobs whose upload may still be on disk (`input_bytes` > 0 until removed)."""
        with self._session() as session:
            rows = session.scalars(
                select(JobRow)
                .where(JobRow.state.in_(list(FINISHED)), JobRow.input_bytes > 0)
                .limit(limit)
            ).all()
            return [Job.of(row) for row in rows]

    def input_removed(self, job_id: str) -> None:
        with self._session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(input_bytes=0))
            session.commit()

    def known(self, job_ids: list[str]) -> set[str]:
        with self._session() as session:
            return set(session.scalars(select(JobRow.id).where(JobRow.id.in_(job_ids))))

    def delete(self, job_id: str) -> None:
        with self._session() as session:
            session.execute(delete(ChunkRow).where(ChunkRow.job_id == job_id))
            session.execute(delete(WebhookRow).where(WebhookRow.job_id == job_id))
            session.execute(delete(JobRow).where(JobRow.id == job_id))
            session.commit()
