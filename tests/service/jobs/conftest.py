"""Apps with jobs in a test's own directory, and waiting for a job to finish."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.conftest import settings_for

FINISHED = {"succeeded", "failed", "cancelled"}


def jobs_settings(store: Path, jobs_dir: Path, **overrides: object):
    defaults = dict(jobs_dir=jobs_dir, jobs_poll_s=0.05, jobs_chunk_views=6)
    return settings_for(store, **{**defaults, **overrides})


@pytest.fixture(scope="module")
def jobs_client(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with its jobs in a directory of its own, shared by a test module."""
    jobs_dir = tmp_path_factory.mktemp("jobs")
    with TestClient(create_app(jobs_settings(store_root, jobs_dir))) as client:
        yield client


def submit(client: httpx.Client | TestClient, path: Path, **params: object) -> httpx.Response:
    with path.open("rb") as f:
        return client.post("/jobs", params=params, files={"video": (path.name, f, "video/mp4")})


def wait(client: httpx.Client | TestClient, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/jobs/{job_id}").json()
        if status["state"] in FINISHED:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {status['state']} after {timeout} s")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server for the session, started from the pgserver wheel (the dev
    extra brings it; nothing to install), reached over its unix socket."""
    import shutil
    import tempfile

    import pgserver

    # Outside pytest's private (0700) temporary tree: run as root, pgserver runs PostgreSQL
    # as an unprivileged user, who must reach the data directory, which pgserver creates.
    root = Path(tempfile.mkdtemp(prefix="actserve-postgres-"))
    root.chmod(0o755)
    server = pgserver.get_server(root / "data", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The jobs database, once as an SQLite file and once on PostgreSQL (a database of its
    own per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"), tmp_path.name)


def fresh_database(server_url: str, name: str) -> str:
    """The URL of a new, empty database on the server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(server_url).set(drivername="postgresql+psycopg")
    name = "jobs_" + "".join(c if c.isalnum() else "_" for c in name.lower())[-40:]
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.set(database=name).render_as_string(hide_password=False)
