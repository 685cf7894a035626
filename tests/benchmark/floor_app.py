"""The load benchmark's second yardstick: the floor of a request on this machine's database.

A bare FastAPI app, no middleware, no authentication, no SQLAlchemy, doing only the
statements Tandem's request needs, straight on the driver, with Tandem's own request and
response models:
- `GET /floor/jobs/{id}` reads a job's columns;
- `GET /floor/organizations/{id}/jobs?limit=N` reads a page of an organization's jobs, newest
  first, and their count, as Tandem's list does (one statement);
- `POST /floor/jobs` inserts a job's row and commits (into `floor_jobs`, a copy of the jobs
  table with its indexes, so that no Tandem executor runs them).
Whatever Tandem adds is on top of these, so their ratios to the bare app are the most that
Tandem's same requests could reach with this stack here.

Served by `python -m uvicorn tests.benchmark.floor_app:app` with
TANDEM_BENCH_FLOOR_DATABASE_URL: a migrated Tandem database, `postgresql://...` (a psycopg
pool) or `sqlite:///path` (sqlite3 called in the event loop's thread, WAL, as Tandem does).
"""

import json
import os
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg_pool
from fastapi import FastAPI, HTTPException, Query, status
from psycopg.types.json import Json
from sqlalchemy import make_url

from tandem.jobs.schemas import JobIn, JobOut
from tandem.pagination import Page

_COLUMNS = list(JobOut.model_fields)
_SELECTED = ", ".join(_COLUMNS)
_NEW_JOB = (
    "(id, task, payload, status, attempts, max_attempts, runs, next_run_at, cancel_requested, "
    "notify, created_at, updated_at)"
)


class Floor(ABC):
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def job(self, job_id: uuid.UUID) -> JobOut | None: ...

    @abstractmethod
    async def page(self, organization_id: uuid.UUID, limit: int) -> Page[JobOut]: ...

    @abstractmethod
    async def insert(self, body: JobIn) -> JobOut: ...


def _page(
    rows: Sequence[Sequence[Any]], convert: Callable[[dict[str, Any]], dict[str, Any]] = dict
) -> Page[JobOut]:
    # Each row ends with the count, which zip leaves out.
    items = [JobOut.model_validate(convert(dict(zip(_COLUMNS, row, strict=False)))) for row in rows]
    return Page[JobOut](items=items, count=rows[0][-1] if rows else 0)


class PostgresFloor(Floor):
    _READ = f"SELECT {_SELECTED} FROM jobs WHERE id = %s"
    _PAGE = (
        f"SELECT {_SELECTED}, (SELECT count(*) FROM jobs WHERE organization_id = %(org)s) "
        "FROM jobs WHERE organization_id = %(org)s ORDER BY created_at DESC, id DESC "
        "LIMIT %(limit)s"
    )
    _INSERT = (
        f"INSERT INTO floor_jobs {_NEW_JOB} VALUES (%s, %s, %s, 'pending', 0, %s, 0, now(), "
        f"false, %s, now(), now()) RETURNING {_SELECTED}"
    )

    def __init__(self, url: str) -> None:
        self.pool = psycopg_pool.AsyncConnectionPool(
            url, min_size=4, max_size=16, kwargs={"autocommit": True}, open=False
        )

    async def open(self) -> None:
        await self.pool.open()
        async with self.pool.connection() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS floor_jobs (LIKE jobs INCLUDING ALL)"
            )

    async def close(self) -> None:
        await self.pool.close()

    async def job(self, job_id: uuid.UUID) -> JobOut | None:
        async with self.pool.connection() as connection:
            row = await (await connection.execute(self._READ, (job_id,))).fetchone()
        return None if row is None else JobOut.model_validate(dict(zip(_COLUMNS, row, strict=True)))

    async def page(self, organization_id: uuid.UUID, limit: int) -> Page[JobOut]:
        async with self.pool.connection() as connection:
            cursor = await connection.execute(self._PAGE, {"org": organization_id, "limit": limit})
            return _page(await cursor.fetchall())

    async def insert(self, body: JobIn) -> JobOut:
        values = (uuid.uuid4(), body.task, Json(body.payload), body.max_attempts, body.notify)
        async with self.pool.connection() as connection, connection.transaction():
            row = await (await connection.execute(self._INSERT, values)).fetchone()
        assert row is not None
        return JobOut.model_validate(dict(zip(_COLUMNS, row, strict=True)))


def _from_sqlite(values: dict[str, Any]) -> dict[str, Any]:
    """What SQLAlchemy's types do on a row read from Tandem's SQLite tables: JSON text
    parsed, datetimes marked UTC (the uuid's 32 hex digits pydantic reads as they are)."""
    for name in ("payload", "result"):
        if values[name] is not None:
            values[name] = json.loads(values[name])
    for name in ("created_at", "updated_at", "next_run_at"):
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name]).replace(tzinfo=UTC)
    return values


class SqliteFloor(Floor):
    _READ = f"SELECT {_SELECTED} FROM jobs WHERE id = ?"
    _PAGE = (
        f"SELECT {_SELECTED}, (SELECT count(*) FROM jobs WHERE organization_id = :org) "
        "FROM jobs WHERE organization_id = :org ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
    _INSERT = (
        f"INSERT INTO floor_jobs {_NEW_JOB} VALUES (:id, :task, :payload, 'pending', 0, "
        f":max_attempts, 0, :now, 0, :notify, :now, :now) RETURNING {_SELECTED}"
    )

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=5000")
        return connection

    async def open(self) -> None:
        self.reader, self.writer = self._connect(), self._connect()
        # floor_jobs: the jobs table as Tandem's migrations made it, indexes included.
        for (sql,) in self.writer.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'jobs' AND sql IS NOT NULL"
        ).fetchall():
            copy = sql.replace("CREATE TABLE jobs", "CREATE TABLE IF NOT EXISTS floor_jobs")
            copy = copy.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS floor_")
            copy = copy.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS floor_")
            self.writer.execute(copy.replace(" ON jobs ", " ON floor_jobs "))

    async def close(self) -> None:
        self.reader.close()
        self.writer.close()

    async def job(self, job_id: uuid.UUID) -> JobOut | None:
        row = self.reader.execute(self._READ, (job_id.hex,)).fetchone()
        if row is None:
            return None
        return JobOut.model_validate(_from_sqlite(dict(zip(_COLUMNS, row, strict=True))))

    async def page(self, organization_id: uuid.UUID, limit: int) -> Page[JobOut]:
        values = {"org": organization_id.hex, "limit": limit}
        return _page(self.reader.execute(self._PAGE, values).fetchall(), _from_sqlite)

    async def insert(self, body: JobIn) -> JobOut:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        values = {
            "id": uuid.uuid4().hex,
            "task": body.task,
            "payload": json.dumps(body.payload),
            "max_attempts": body.max_attempts,
            "notify": body.notify,
            "now": now,
        }
        self.writer.execute("BEGIN IMMEDIATE")
        (row,) = self.writer.execute(self._INSERT, values).fetchall()
        self.writer.execute("COMMIT")
        return JobOut.model_validate(_from_sqlite(dict(zip(_COLUMNS, row, strict=True))))


def _floor(url: str) -> Floor:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqliteFloor(parsed.database or "")
    return PostgresFloor(parsed.set(drivername="postgresql").render_as_string(False))


floor = _floor(os.environ.get("TANDEM_BENCH_FLOOR_DATABASE_URL", "sqlite://"))


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await floor.open()
    yield
    await floor.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/floor/jobs/{job_id}")
async def read_job(job_id: uuid.UUID) -> JobOut:
    job = await floor.job(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Job not found")
    return job


@app.get("/floor/organizations/{organization_id}/jobs")
async def list_jobs(
    organization_id: uuid.UUID, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> Page[JobOut]:
    return await floor.page(organization_id, limit)


@app.post("/floor/jobs", status_code=status.HTTP_202_ACCEPTED)
async def submit_job(body: JobIn) -> JobOut:
    return await floor.insert(body)
