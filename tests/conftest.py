"""Root fixtures: settings, the database per backend, the transactional session, the app.

Every database test runs twice, on SQLite and on PostgreSQL (the `database_url` fixture is
parametrised). The schema is built once per backend by running the Alembic migrations; every
test then runs inside one outer transaction that is rolled back at teardown, and the app's
sessions join it through savepoints, so code that commits still leaves nothing behind.
"""

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from tandem.app import create_app
from tandem.db import (
    READ_METHODS,
    create_engine,
    create_sessionmaker,
    get_read_connection,
    get_session,
    transaction_scope,
)
from tandem.identity.logins import start_login
from tandem.identity.models import User
from tandem.migrations import upgrade_to_head
from tandem.models import Base
from tandem.settings import Settings
from tandem.testing import wait_for
from tests import factories
from tests.factories import make_user

pytest_plugins = ["tests.smtp_server", "tests.redis_fixtures"]

BACKENDS = ("sqlite", "postgresql")


def services_required() -> bool:
    return os.environ.get("TANDEM_TEST_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """A missing service skips the test locally; under CI it is a failure, never a skip."""
    if services_required():
        pytest.fail(f"{reason} (TANDEM_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in a directory of its own, so defaults like ./tandem.db or the dev
    JWT secret (./jwt-secret) never land in the checkout or leak between tests."""
    monkeypatch.chdir(tmp_path)


# --- PostgreSQL databases ------------------------------------------------------------------


def _admin_conninfo(url: str) -> str:
    """A libpq connection string for the server's maintenance database."""
    parsed = make_url(url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TANDEM_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("TANDEM_TEST_POSTGRES_URL is not set")
    assert url is not None
    try:
        with psycopg.connect(_admin_conninfo(url), connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL at TANDEM_TEST_POSTGRES_URL does not answer: {exc}")
    return url


@pytest.fixture(scope="session")
def create_postgres_database(postgres_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the test server (one per call), dropped at the end."""
    created: list[str] = []
    admin = _admin_conninfo(postgres_url)
    base_name = make_url(postgres_url).database or "tandem_test"

    def create() -> str:
        name = f"{base_name}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return make_url(postgres_url).set(database=name).render_as_string(hide_password=False)

    yield create
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the database under test -----------------------------------------------------------------


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "tandem-test.db"
        return f"sqlite+aiosqlite:///{path}"
    create: Callable[[], str] = request.getfixturevalue("create_postgres_database")
    return create()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """One engine per backend and test session; the schema comes from the migrations."""
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


@asynccontextmanager
async def rolled_back_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is always rolled back."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()


def joined_session(connection: AsyncConnection) -> AsyncSession:
    """A session whose commits only release a savepoint of the outer transaction."""
    return AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
async def db_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with rolled_back_connection(engine) as connection:
        yield connection


@pytest.fixture
async def db_session(db_connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    session = joined_session(db_connection)
    factories.bind(session)
    try:
        yield session
    finally:
        factories.bind(None)
        await session.close()


# --- a database whose commits are real -------------------------------------------------------
# For what the rolled-back test transaction cannot show: background workers that must see
# committed rows, and races between concurrent requests on their own connections.


@dataclass(frozen=True)
class CommittedDatabase:
    url: str
    sessionmaker: async_sessionmaker[AsyncSession]

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith("postgresql")


@pytest.fixture(scope="session", params=BACKENDS)
async def committed_template_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """One migrated database per backend and test process. PostgreSQL: the database the tests
    share, emptied before each (a new one costs a checkpoint to drop). SQLite: a file each
    test copies, so a lock a failed test left behind cannot reach the next one."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('committed') / 'template.db'}"
    else:
        create: Callable[[], str] = request.getfixturevalue("create_postgres_database")
        url = create()
    engine = create_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()  # SQLite: the last connection to close folds the WAL into the file
    return url


@pytest.fixture
async def committed_db(
    committed_template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CommittedDatabase]:
    """The committed database, with no rows another test left."""
    url = committed_template_url
    if url.startswith("sqlite"):
        copy = tmp_path_factory.mktemp("committed") / "committed.db"
        shutil.copyfile(make_url(url).database or "", copy)
        url = f"sqlite+aiosqlite:///{copy}"
    engine = create_engine(url)
    try:
        if not url.startswith("sqlite"):
            async with engine.begin() as connection:
                for table in reversed(Base.metadata.sorted_tables):
                    await connection.execute(table.delete())
        yield CommittedDatabase(url, create_sessionmaker(engine))
    finally:
        await engine.dispose()


# --- the application ------------------------------------------------------------------------


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # No job executor: jobs submitted inside the rolled-back transaction are never committed,
    # so nothing could see them; tests of execution use `committed_db`.
    return Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, data_dir=tmp_path, worker_enabled=False
    )


def override_session(app: FastAPI, connection: AsyncConnection) -> None:
    """Route the app's request sessions into the test's outer transaction.

    A read request (GET, HEAD) runs on the read-only engine in production; here, on SQLite,
    its connection refuses writes for the request's duration (`PRAGMA query_only`), so a
    read route that writes fails its tests as it would fail in production."""
    sqlite = connection.dialect.name == "sqlite"

    async def session_in_test_transaction(request: Request) -> AsyncIterator[AsyncSession]:
        read_only = sqlite and request.method in READ_METHODS
        async with joined_session(connection) as session, transaction_scope(session):
            if read_only:
                await session.execute(text("PRAGMA query_only=ON"))
            try:
                yield session
            finally:
                if read_only:
                    await connection.exec_driver_sql("PRAGMA query_only=OFF")

    async def connection_in_test_transaction(request: Request) -> AsyncIterator[AsyncConnection]:
        read_only = sqlite and request.method in READ_METHODS
        if read_only:
            await connection.exec_driver_sql("PRAGMA query_only=ON")
        try:
            yield connection
        finally:
            if read_only:
                await connection.exec_driver_sql("PRAGMA query_only=OFF")

    app.dependency_overrides[get_session] = session_in_test_transaction
    app.dependency_overrides[get_read_connection] = connection_in_test_transaction


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and an httpx client speaking ASGI to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
def app(settings: Settings, db_connection: AsyncConnection, db_session: AsyncSession) -> FastAPI:
    """The app, its request sessions inside the test's transaction (factories bound too)."""
    app = create_app(settings)
    override_session(app, db_connection)
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as client:
        yield client


# --- signing in -----------------------------------------------------------------------------

AuthHeaders = dict[str, str]
LoginAs = Callable[..., Awaitable[AuthHeaders]]


@pytest.fixture
async def member(db_session: AsyncSession) -> User:
    """A member (the least privileged role) of a new organization."""
    return await make_user()


@pytest.fixture
def login_as(app: FastAPI, db_session: AsyncSession, client: httpx.AsyncClient) -> LoginAs:
    """Headers of a real login for a user (factory-made), optionally narrowed to `scopes`."""

    async def headers_for(user: User, scopes: set[str] | None = None) -> AuthHeaders:
        tokens = await start_login(
            db_session, app.state.token_signer, timedelta(days=1), user, scopes
        )
        return {"Authorization": f"Bearer {tokens.access_token}"}

    return headers_for


# --- waiting for background work ------------------------------------------------------------


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[Any]]:
    """The one deadline helper: `await wait_until(lambda: ..., timeout=5)`."""
    return wait_for
