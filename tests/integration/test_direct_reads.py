"""The direct read path (tandem/direct_reads.py): the read routes' statements run on the
driver's own connection, and must read exactly what they read through SQLAlchemy."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import Executable, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tandem.app import create_app
from tandem.db import create_engine, insert_row
from tandem.direct_reads import DirectReads
from tandem.errors import DATABASE_UNAVAILABLE
from tandem.identity import principal
from tandem.identity import service as identity_service
from tandem.identity.credential_cache import CredentialCache
from tandem.identity.models import ApiKey, LoginSession
from tandem.jobs import service as jobs_service
from tandem.jobs.models import AttemptOutcome, JobAttempt, JobStatus
from tandem.migrations import upgrade_to_head
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running

pytestmark = pytest.mark.anyio


@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient
    bearer: dict[str, str]
    key: dict[str, str]
    job_id: str
    url: str


@asynccontextmanager
async def serving(url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """An app on a migrated database: a user, an API key, and a job with two attempts (one
    failed, one running)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, data_dir=tmp_path, worker_enabled=False
    )
    app = create_app(settings)
    async with running(app) as client:
        account = {"email": "d@example.com", "password": "a long password", "full_name": "D"}
        registered = await client.post("/api/v1/auth/register", json=account)
        assert registered.status_code == 201, registered.text
        bearer = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        created = await client.post(
            "/api/v1/api-keys", json={"name": "k", "scopes": ["jobs:read"]}, headers=bearer
        )
        assert created.status_code == 201, created.text
        job = await client.post(
            "/api/v1/jobs", json={"task": "echo", "payload": {"n": [1, "two"]}}, headers=bearer
        )
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        started = datetime.now(UTC) - timedelta(minutes=3)
        async with app.state.sessionmaker() as session:
            for number, finished, outcome, error in (
                (1, started + timedelta(seconds=5), AttemptOutcome.failed, "boom"),
                (2, None, AttemptOutcome.running, None),
            ):
                attempt = JobAttempt(
                    id=uuid.uuid4(),
                    job_id=uuid.UUID(job_id),
                    number=number,
                    worker="w",
                    outcome=outcome,
                    started_at=started,
                    finished_at=finished,
                    error=error,
                )
                await insert_row(session, attempt)
            await session.commit()
        yield Served(app, client, bearer, {"X-API-Key": created.json()["key"]}, job_id, url)


@pytest.fixture
async def served(committed_db: CommittedDatabase, tmp_path: Path) -> AsyncIterator[Served]:
    """On each database."""
    async with serving(committed_db.url, tmp_path) as served:
        yield served


async def _through_both(app: FastAPI, statement: Executable, values: dict[str, Any]) -> Any:
    async with app.state.read_engine.connect() as connection:
        expected = await connection.execute(statement, values)
        expected_keys, expected_rows = list(expected.keys()), expected.all()
    async with app.state.direct_reads.connect() as connection:
        got = await connection.execute(statement, values)
        keys, rows = list(got.keys()), got.all()
    assert keys == expected_keys
    assert [tuple(row) for row in rows] == [tuple(row) for row in expected_rows]
    # Equal is not enough: an enum member equals its string, an aware datetime another zone's.
    assert [[(type(v), getattr(v, "tzinfo", None)) for v in row] for row in rows] == [
        [(type(v), getattr(v, "tzinfo", None)) for v in row] for row in expected_rows
    ]
    assert [row._fields for row in rows] == [row._fields for row in expected_rows]
    return rows


async def test_every_read_path_statement_reads_what_sqlalchemy_reads(served: Served) -> None:
    app = served.app
    assert isinstance(app.state.direct_reads, DirectReads)
    async with app.state.read_engine.connect() as connection:
        login = (await connection.execute(select(LoginSession))).one()
        key = (await connection.execute(select(ApiKey))).one()
    organization = {"organization_id": key.organization_id}
    job = {"object_id": uuid.UUID(served.job_id), **organization}
    statements: list[tuple[Executable, dict[str, Any]]] = [
        (principal._ACCESS_TOKEN_QUERY, {"user_id": login.user_id, "login_id": login.id}),
        (principal._API_KEY_QUERY, {"key_hash": key.key_hash}),
        (
            identity_service._USER_OUT.statement,
            {"object_id": key.created_by_id, **organization},
        ),
        (jobs_service._JOB_DETAIL.statement, job),
    ]
    for (by_status, by_task), page in jobs_service._JOBS_PAGES.items():
        values = {
            **organization,
            "status": JobStatus.pending if by_status else None,
            "task": "echo" if by_task else None,
        }
        statements.append((page.rows, {**values, "page_limit": 20, "page_offset": 0}))
        statements.append((page.count, values))
    for statement, values in statements:
        rows = await _through_both(app, statement, values)
        assert rows, statement  # each found what it looked for: the comparison compared rows
    detail = await _through_both(app, jobs_service._JOB_DETAIL.statement, job)
    assert [row.outcome for row in detail] == [AttemptOutcome.failed, AttemptOutcome.running]


async def test_the_read_routes_answer_as_through_sqlalchemy(served: Served) -> None:
    """The same bodies, byte for byte, with the direct pool and with the read engine."""
    paths = [
        (f"/api/v1/jobs/{served.job_id}", served.key),
        ("/api/v1/jobs?limit=20", served.key),
        ("/api/v1/jobs?status=pending&task=echo", served.bearer),
        ("/api/v1/users/me", served.bearer),
    ]
    me = await served.client.get("/api/v1/users/me", headers=served.bearer)
    paths.append((f"/api/v1/users/{me.json()['id']}", served.bearer))

    async def bodies() -> list[bytes]:
        # A new credential cache each time: the principal is read from the database too.
        served.app.state.credential_cache = CredentialCache()
        responses = [await served.client.get(path, headers=headers) for path, headers in paths]
        assert [r.status_code for r in responses] == [200] * len(paths)
        return [r.content for r in responses]

    direct = await bodies()
    pool = served.app.state.direct_reads
    served.app.state.direct_reads = None
    try:
        through_the_engine = await bodies()
    finally:
        served.app.state.direct_reads = pool
    assert direct == through_the_engine
    assert pool.checked_out == 0


async def test_a_write_on_the_direct_read_path_is_refused(served: Served) -> None:
    deleted = JobAttempt.__table__.delete()
    async with served.app.state.direct_reads.connect() as connection:
        with pytest.raises(DBAPIError, match=r"read-only transaction|readonly database"):
            await connection.execute(deleted)
    async with served.app.state.read_engine.connect() as connection:
        assert len((await connection.execute(select(JobAttempt.id))).all()) == 2


async def test_connections_cut_by_the_server_cost_one_503_then_are_replaced(
    create_postgres_database: Callable[[], str],
    tmp_path: Path,
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    """PostgreSQL: a restarted server, or an administrator ending its sessions."""
    url = create_postgres_database()
    engine = create_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()
    async with serving(url, tmp_path) as served:
        await _cut_and_replaced(served, wait_until)


async def _cut_and_replaced(served: Served, wait_until: Callable[..., Awaitable[Any]]) -> None:
    path = f"/api/v1/jobs/{served.job_id}"
    assert (await served.client.get(path, headers=served.bearer)).status_code == 200
    admin = make_url(served.url).set(drivername="postgresql", database="postgres")
    async with await psycopg.AsyncConnection.connect(
        admin.render_as_string(hide_password=False), autocommit=True
    ) as connection:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (make_url(served.url).database,),
        )
    cut = await served.client.get(path, headers=served.bearer)
    assert cut.status_code == 503, cut.text
    assert cut.json() == {"detail": DATABASE_UNAVAILABLE}
    assert cut.headers["Retry-After"] == "5"

    async def answered() -> bool:
        return (await served.client.get(path, headers=served.bearer)).status_code == 200

    await wait_until(answered, timeout=10)
