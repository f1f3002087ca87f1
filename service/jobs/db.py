"""The jobs' tables (SQLAlchemy) and the engine for an SQLite file or a PostgreSQL server.

    actserve_jobs        one row per job: what was asked, its state, lease and progress
    actserve_job_chunks  one row per finished chunk: its windows' logits and embeddings
    actserve_job_webhooks  one row per job with a webhook: its delivery and every attempt

Times are UNIX seconds (floats), the same on every database. Results are stored per chunk
as `.npy` bytes, so a resumed job reads back exactly what the chunks computed.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "actserve_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    #: What was asked: model, version, profile, features, top_k, segment_score.
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    #: Where the video is: `upload` (a file in the jobs directory) or a resolver's scheme.
    input_kind: Mapped[str] = mapped_column(String(16))
    input_ref: Mapped[str] = mapped_column(String(2000))
    input_bytes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float | None] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    #: The process running it and until when its lease holds.
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[float | None] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Progress of the current run, for the ETA: when it was taken, windows done then.
    run_started_at: Mapped[float | None] = mapped_column(Double)
    run_windows_from: Mapped[int] = mapped_column(Integer, default=0)
    windows_total: Mapped[int | None] = mapped_column(Integer)
    windows_done: Mapped[int] = mapped_column(Integer, default=0)
    #: Chunk bounds and window times, fixed when the job is first planned.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: The whole-video answer (averaged probabilities, mean embedding, segments, video).
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_actserve_jobs_state_created", "state", "created_at"),)


class ChunkRow(Base):
    __tablename__ = "actserve_job_chunks"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("actserve_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)  # first window
    stop: Mapped[int] = mapped_column(Integer)  # past the last window
    logits: Mapped[bytes] = mapped_column(LargeBinary)  # (V, K) per view
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # (V, D) per view
    view_window: Mapped[bytes] = mapped_column(LargeBinary)  # (V,) window of each view
    frames_decoded: Mapped[int] = mapped_column(Integer)
    warnings: Mapped[list[str]] = mapped_column(JSON)
    video: Mapped[dict[str, Any]] = mapped_column(JSON)  # the video's description
    #: The shot boundaries in its stretch, with the `shots` feature (added after 0.1: null).
    shots: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Double)


class WebhookRow(Base):
    __tablename__ = "actserve_job_webhooks"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("actserve_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    message_id: Mapped[str] = mapped_column(String(64))
    #: pending, delivered or failed (gave up).
    state: Mapped[str] = mapped_column(String(16))
    #: Every attempt: number, at, duration_s, status_code, error.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Double)
    #: Last written by the process delivering it (a pending row left stale is resumed).
    updated_at: Mapped[float] = mapped_column(Double)


def to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def connect(url: str) -> Engine:
    """An engine for `url` with the tables created. `postgresql://` uses psycopg 3; SQLite
    runs in WAL mode with a busy timeout, so processes sharing the file wait for each other's
    writes instead of failing."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    _add_new_columns(engine)
    return engine


def _add_new_columns(engine: Engine) -> None:
    """Add the nullable columns this version has and a database made by an older one lacks
    (`create_all` makes missing tables only): an upgrade keeps its jobs."""
    tables = inspect(engine)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in tables.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"the jobs database lacks {table.name}.{column.name}")
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as connection:
                connection.execute(
                    text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                )
