"""The request owns the transaction; tests own an outer one that nothing escapes."""

import sqlite3
import uuid
from contextlib import ExitStack
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tandem import sqlite
from tandem.app import create_app
from tandem.db import SessionDep, create_engine, insert_row, utcnow
from tandem.errors import Conflict
from tandem.jobs.models import Job, JobStatus
from tandem.models import Organization
from tandem.settings import Settings
from tandem.sqlite import BUSY_TIMEOUT_MS, create_inline_read_engine
from tests.conftest import override_session, rolled_back_connection, running
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.anyio


class NewOrganization(BaseModel):
    name: str
    fail_after_write: bool = False


def add_organization_routes(app: FastAPI) -> None:
    @app.post("/test/organizations", status_code=201)
    async def create(body: NewOrganization, session: SessionDep) -> dict[str, str]:
        organization = Organization(name=body.name)
        session.add(organization)
        await session.flush()
        if body.fail_after_write:
            raise Conflict("Refused after writing")
        return {"id": str(organization.id)}

    @app.post("/test/organizations/committed", status_code=201)
    async def create_and_commit(body: NewOrganization, session: SessionDep) -> dict[str, str]:
        organization = Organization(name=body.name)
        session.add(organization)
        await session.commit()  # code that commits on its own must not escape the test either
        return {"id": str(organization.id)}


async def count_named(session_or_engine: AsyncSession | AsyncEngine, name: str) -> int:
    query = select(func.count()).select_from(Organization).where(Organization.name == name)
    if isinstance(session_or_engine, AsyncEngine):
        async with session_or_engine.connect() as connection:
            return (await connection.execute(query)).scalar_one()
    return (await session_or_engine.execute(query)).scalar_one()


@pytest.fixture
def app_with_routes(app: FastAPI) -> FastAPI:
    add_organization_routes(app)
    return app


async def test_session_commits_when_the_handler_succeeds(
    app_with_routes: FastAPI, db_session: AsyncSession
) -> None:
    async with running(app_with_routes) as client:
        response = await client.post("/test/organizations", json={"name": "Committed Co"})
    assert response.status_code == 201, response.text
    created = await db_session.get(Organization, uuid.UUID(response.json()["id"]))
    assert created is not None
    assert created.name == "Committed Co"
    assert created.created_at.tzinfo is not None


async def test_session_rolls_back_when_the_handler_raises(
    app_with_routes: FastAPI, db_session: AsyncSession
) -> None:
    async with running(app_with_routes) as client:
        response = await client.post(
            "/test/organizations", json={"name": "Rolled Back Co", "fail_after_write": True}
        )
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "Refused after writing"}
    assert await count_named(db_session, "Rolled Back Co") == 0


async def test_rows_committed_by_the_app_do_not_outlive_the_test(
    engine: AsyncEngine, settings: Settings
) -> None:
    """The same machinery as the `app` fixture, observed from outside the test's transaction."""
    name = f"Leak check {uuid.uuid4()}"
    async with rolled_back_connection(engine) as connection:
        app = create_app(settings)
        override_session(app, connection)
        add_organization_routes(app)
        async with running(app) as client:
            for path in ("/test/organizations", "/test/organizations/committed"):
                response = await client.post(path, json={"name": name})
                assert response.status_code == 201, response.text
        inside = (
            await connection.execute(
                select(func.count()).select_from(Organization).where(Organization.name == name)
            )
        ).scalar_one()
        assert inside == 2
    assert await count_named(engine, name) == 0


async def test_factories_write_inside_the_test_transaction(db_session: AsyncSession) -> None:
    organization = await OrganizationFactory.create_async(name="Factory Made")
    assert organization.id is not None
    assert await count_named(db_session, "Factory Made") == 1


async def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}")
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}


async def test_client_fixture_serves_the_app(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.json()["status"] == "healthy"


async def test_sqlite_writers_of_one_process_get_the_write_lock_in_arrival_order(
    tmp_path: Path,
) -> None:
    """Sixteen requests writing at once: they queue for the process's write connection and
    write in the order they came, none of them sleeping in SQLite's busy handler and losing
    its turn to a later one (which gave a p99 of ~1 s under load)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writers.db'}")
    order: list[int] = []

    async def write(n: int) -> None:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(f"INSERT INTO writes VALUES ({n})")
            order.append(n)

    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE writes (n INTEGER)")
        async with anyio.create_task_group() as group:
            for n in range(16):
                group.start_soon(write, n)
        async with engine.connect() as connection:
            written = (await connection.exec_driver_sql("SELECT n FROM writes")).scalars().all()
    finally:
        await engine.dispose()
    assert order == list(range(16))
    assert sorted(written) == list(range(16))


async def test_a_sqlite_writer_waits_for_another_process_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """The write connection runs in the loop's thread: while another process holds the
    write lock, BEGIN IMMEDIATE waits asleep on the loop (other requests go on), and writes
    as soon as the lock is free."""
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    other_process = sqlite3.connect(path, isolation_level=None)
    ticks = 0
    written = anyio.Event()

    async def write() -> None:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("INSERT INTO writes VALUES (1)")
        written.set()

    async def tick() -> None:
        nonlocal ticks
        while not written.is_set():
            ticks += 1
            await anyio.sleep(0.01)

    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE writes (n INTEGER)")
        other_process.execute("BEGIN IMMEDIATE")
        async with anyio.create_task_group() as group:
            group.start_soon(write)
            group.start_soon(tick)
            await anyio.sleep(0.5)
            assert not written.is_set()
            assert ticks >= 20  # the loop went on serving while the writer waited
            other_process.execute("COMMIT")
            with anyio.fail_after(2):
                await written.wait()
        async with engine.connect() as connection:
            count = (await connection.exec_driver_sql("SELECT count(*) FROM writes")).scalar()
            busy_timeout = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        other_process.close()
        await engine.dispose()
    assert count == 1
    assert busy_timeout == BUSY_TIMEOUT_MS


async def test_a_sqlite_writer_gives_up_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with SQLite's own busy handler: "database is locked" once the busy timeout has
    passed (a 503 for a request), and the connection is usable again afterwards."""
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "held.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    other_process = sqlite3.connect(path, isolation_level=None)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE writes (n INTEGER)")
        other_process.execute("BEGIN IMMEDIATE")
        started = anyio.current_time()
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin() as connection:
                await connection.exec_driver_sql("INSERT INTO writes VALUES (1)")
        assert anyio.current_time() - started >= 0.3
        other_process.execute("ROLLBACK")
        async with engine.begin() as connection:
            await connection.exec_driver_sql("INSERT INTO writes VALUES (2)")
            count = (await connection.exec_driver_sql("SELECT count(*) FROM writes")).scalar()
    finally:
        other_process.close()
        await engine.dispose()
    assert count == 1


async def test_the_sqlite_read_engine_keeps_the_configured_pool(tmp_path: Path) -> None:
    """TANDEM_DATABASE_POOL_SIZE holds on SQLite's read engine too: with SQLAlchemy's default
    of 5, a sixth concurrent read opened a connection and closed it again after one query."""
    engine = create_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", pool_size=12, read_only=True
    )
    try:
        assert engine.pool.size() == 12  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_the_sqlite_inline_read_engine_never_waits_for_a_connection(
    tmp_path: Path,
) -> None:
    """Its checkouts run in the event loop's thread: one that waited for a connection to come
    back would block the loop, and with it whoever would bring the connection back. With a
    pool of one and SQLAlchemy's default overflow of 10, the twelfth waited 30 s."""
    engine = create_inline_read_engine(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}", pool_size=1)
    assert engine is not None
    try:
        with ExitStack() as held:
            connections = [held.enter_context(engine.connect()) for _ in range(12)]
            assert {c.exec_driver_sql("SELECT 1").scalar() for c in connections} == {1}
    finally:
        engine.dispose()
    assert create_inline_read_engine("sqlite+aiosqlite://") is None
    assert create_inline_read_engine("postgresql+psycopg://localhost/tandem") is None


_UNSET = object()  # a column _new_job leaves out


def _new_job(**columns: object) -> Job:
    now = utcnow()
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "organization_id": None,
        "submitted_by_id": None,
        "task": "echo",
        "payload": {"n": 1},
        "status": JobStatus.pending,
        "attempts": 0,
        "runs": 0,
        "max_attempts": 3,
        "next_run_at": now,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
        "cancel_requested": False,
        "last_error": None,
        "result": None,
        "idempotency_key": None,
        "notify": False,
        "started_at": None,
        "finished_at": None,
        "created_at": now,
        "updated_at": now,
    }
    values.update(columns)
    return Job(**{key: value for key, value in values.items() if value is not _UNSET})


async def test_insert_row_writes_the_row_as_the_orm_would(
    db_session: AsyncSession,
) -> None:
    job = _new_job()
    await insert_row(db_session, job)

    assert job not in db_session
    # A JSON column set to None is SQL NULL, as the ORM writes it, not JSON null.
    stored_null = await db_session.scalar(select(Job.result.is_(None)).where(Job.id == job.id))
    assert stored_null is True
    stored = await db_session.get_one(Job, job.id)
    assert (stored.task, stored.payload, stored.status) == ("echo", {"n": 1}, JobStatus.pending)
    assert stored.created_at == job.created_at


@pytest.mark.parametrize(
    ("columns", "named"),
    [({"created_at": _UNSET}, "created_at"), ({"status": None}, "status")],
    ids=["an unset column", "None in a column with a default"],
)
async def test_insert_row_refuses_a_column_it_would_write_wrong(
    db_session: AsyncSession, columns: dict[str, object], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        await insert_row(db_session, _new_job(**columns))
    assert await db_session.scalar(select(func.count()).select_from(Job)) == 0
