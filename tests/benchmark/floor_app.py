"""The load benchmark's second yardstick: the floor of a PostgreSQL request on this machine.

A bare FastAPI app, no middleware, no authentication, no SQLAlchemy, doing only the
statement Tandem's request needs, on a psycopg pool, with Tandem's own request and response
models: `GET /floor/jobs/{id}` reads a job's columns, `POST /floor/jobs` inserts a job's row
and commits (into `floor_jobs`, a copy of the jobs table with its indexes, so that no Tandem
executor runs them). Whatever Tandem adds is on top of these, so their ratios to the bare
app are the most that Tandem's same requests could reach with this stack here.

Served by `python -m uvicorn tests.benchmark.floor_app:app` with
TANDEM_BENCH_FLOOR_DATABASE_URL (a migrated Tandem database, `postgresql://...`).
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg_pool
from fastapi import FastAPI, HTTPException, status
from psycopg.types.json import Json

from tandem.jobs.schemas import JobIn, JobOut

_COLUMNS = list(JobOut.model_fields)
_READ = f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = %s"
_INSERT = (
    "INSERT INTO floor_jobs (id, task, payload, status, attempts, max_attempts, runs, "
    "next_run_at, cancel_requested, notify, created_at, updated_at) "
    "VALUES (%s, %s, %s, 'pending', 0, %s, 0, now(), false, %s, now(), now()) "
    f"RETURNING {', '.join(_COLUMNS)}"
)

pool = psycopg_pool.AsyncConnectionPool(
    os.environ.get("TANDEM_BENCH_FLOOR_DATABASE_URL", ""),
    min_size=4,
    max_size=16,
    kwargs={"autocommit": True},
    open=False,
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await pool.open()
    async with pool.connection() as connection:
        await connection.execute("CREATE TABLE IF NOT EXISTS floor_jobs (LIKE jobs INCLUDING ALL)")
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/floor/jobs/{job_id}")
async def read_job(job_id: uuid.UUID) -> JobOut:
    async with pool.connection() as connection:
        row = await (await connection.execute(_READ, (job_id,))).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Job not found")
    return JobOut.model_validate(dict(zip(_COLUMNS, row, strict=True)))


@app.post("/floor/jobs", status_code=status.HTTP_202_ACCEPTED)
async def submit_job(body: JobIn) -> JobOut:
    values = (uuid.uuid4(), body.task, Json(body.payload), body.max_attempts, body.notify)
    async with pool.connection() as connection, connection.transaction():
        row = await (await connection.execute(_INSERT, values)).fetchone()
    assert row is not None
    return JobOut.model_validate(dict(zip(_COLUMNS, row, strict=True)))
