"""Stream definitions in the jobs database (SQLAlchemy Core; SQLite by default), so streams
come back after a restart.

One table, `streams`: the id, the definition as the JSON of `StreamCreate`, and when it was
added. The default SQLite file is created on the first stream added; a service that never
runs a stream leaves no file behind. Calls block: the manager runs them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import Engine

from service.streams.schemas import StreamCreate

metadata = MetaData()
streams_table = Table(
    "streams",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("definition", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class StoredStream:
    id: str
    definition: StreamCreate
    created_at: datetime


class StreamStore:
    def __init__(self, url: str, sqlite_file: Path | None) -> None:
        """`url`: the jobs database; `sqlite_file`: its file when it is the default SQLite one
        (created only when the first stream is stored)."""
        self.sqlite_file = sqlite_file
        self.url = url
        self._engine: Engine | None = None

    def _connect(self, create: bool) -> Engine | None:
        if self._engine is None:
            if self.sqlite_file is not None:
                if not create and not self.sqlite_file.exists():
                    return None
                self.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(self.url)
            metadata.create_all(self._engine, tables=[streams_table])
        return self._engine

    def load(self) -> list[StoredStream]:
        engine = self._connect(create=False)
        if engine is None or not inspect(engine).has_table("streams"):
            return []
        with engine.connect() as connection:
            rows = connection.execute(select(streams_table).order_by(streams_table.c.created_at))
            return [
                StoredStream(
                    row.id,
                    StreamCreate.model_validate(row.definition),
                    _aware(row.created_at),
                )
                for row in rows
            ]

    def add(self, stream_id: str, definition: StreamCreate, created_at: datetime) -> None:
        engine = self._connect(create=True)
        assert engine is not None
        with engine.begin() as connection:
            connection.execute(
                insert(streams_table).values(
                    id=stream_id,
                    definition=definition.model_dump(mode="json"),
                    created_at=created_at,
                )
            )

    def remove(self, stream_id: str) -> None:
        engine = self._connect(create=False)
        if engine is None:
            return
        with engine.begin() as connection:
            connection.execute(delete(streams_table).where(streams_table.c.id == stream_id))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes: they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
