"""Engine, sessions and the declarative base.

The transaction belongs to the request (or the job): `get_session` commits when the handler
succeeds and rolls back when it raises. Services call `flush()`, never `commit()`.

A request that cannot change anything (GET, HEAD, OPTIONS) gets its session from a second,
read-only engine (`create_engine(..., read_only=True)`): on SQLite its transactions begin
DEFERRED and never take the write lock, on PostgreSQL it runs without BEGIN/COMMIT round
trips; on both the database itself refuses a write (docs/decisions.md, "The request path").
A route that reads plain columns opens `read_connection` itself (on a SQLite file, a
connection of a synchronous engine, run in the event loop's thread).
"""

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol, cast

import aiosqlite
from fastapi import Depends, Request
from sqlalchemy import (
    DateTime,
    Enum,
    Executable,
    MetaData,
    Table,
    Update,
    Uuid,
    event,
    insert,
    inspect,
)
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import Connection, CursorResult, Dialect, Engine, Result, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from tandem.errors import Conflict, TandemError

# Below db in the layers, and imports nothing of Tandem: a commit publishes credential changes.
from tandem.identity.credential_cache import publish_changes

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_BEGIN_OPTION = "sqlite_begin"
# Execution options for a read-only connection: on SQLite it does not take the write lock.
READ_ONLY = {SQLITE_BEGIN_OPTION: "DEFERRED"}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every database, stored as UTC.

    PostgreSQL keeps the offset (timestamptz); SQLite keeps none, so values are converted to
    UTC on the way in and marked UTC on the way out. Naive datetimes are refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("Naive datetime given; use an aware datetime (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def string_enum(enum: type[StrEnum], *, length: int = 20, check_name: str | None = None) -> Enum:
    """An enum stored as its plain value in a VARCHAR (no native type to migrate), read back as
    the enum member; `check_name` also adds a CHECK constraint listing the values."""
    return Enum(
        enum,
        native_enum=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        create_constraint=check_name is not None,
        name=check_name,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _configure_sqlite(engine: Engine, *, read_only: bool = False) -> None:
    """SQLAlchemy's documented recipe: let SQLAlchemy, not the sqlite3 driver, emit BEGIN.

    Without it SAVEPOINT does not join the enclosing transaction (a row committed inside a
    test's savepoint would survive the test's rollback), SELECTs run outside transactions, and
    DDL autocommits. Every transaction begins IMMEDIATE: it takes the write lock up front, so
    a read-then-write transaction waits for the lock (busy timeout) instead of failing with
    SQLITE_BUSY when another writer got there first. A pure read may opt out with
    `connection.execution_options(**READ_ONLY)`; every transaction of a `read_only` engine
    begins DEFERRED, on connections that refuse writes (`PRAGMA query_only`).

    A `read_only` engine emits no BEGIN at all (AUTOCOMMIT, as on PostgreSQL): each SELECT
    reads its own snapshot, without the BEGIN and COMMIT round trips.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    if read_only:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


AFTER_COMMIT_KEY = "tandem_after_commit"


def call_after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Runs `callback` once the session's transaction has committed (dropped on rollback)."""
    session.sync_session.info.setdefault(AFTER_COMMIT_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(AFTER_COMMIT_KEY, []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(AFTER_COMMIT_KEY, None)


class _RunAtOnce:
    """Stands in for the queue to aiosqlite's worker thread: runs each call when queued."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineSqliteConnection(aiosqlite.Connection):
    """An aiosqlite connection whose sqlite3 calls run in the event loop's own thread.

    For read-only connections only: aiosqlite hands every call (cursor, execute, fetch,
    commit) to a thread of the connection's own and back, and under load each hand-over
    waits for the GIL (~0.2 ms, most of a small read's cost). A read in WAL mode never waits
    for a lock, so running it at once blocks the loop only for the query itself; writes,
    which may wait for the write lock (busy timeout), keep aiosqlite's thread.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunAtOnce()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # no worker thread to start

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


# How long BEGIN IMMEDIATE sleeps between tries while another process holds the write lock:
# SQLite's own busy handler's steps, but asleep on the loop instead of in a thread.
_BUSY_DELAYS_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)


class WriteSqliteConnection(InlineSqliteConnection):
    """The process's one write connection, also run in the event loop's own thread.

    A write transaction here is BEGIN IMMEDIATE, its statements, COMMIT. Only BEGIN IMMEDIATE
    can wait for another connection (another process's writer): it is tried with no busy
    timeout and, while the lock is taken, retried after an `asyncio.sleep`, until the busy
    timeout has passed (then SQLite's "database is locked", as before). Once it holds the
    lock, nothing else this connection runs waits for anyone in WAL mode, so running it at
    once costs the loop only the statement itself, where each hand-over to aiosqlite's thread
    and back held the lock ~0.1 ms longer (more under load: the loop's thread waits for the
    GIL), and every other writer of the process with it.

    No call ever goes to a thread, so calls run in the order they are made (one sent to a
    thread while the next ran at once, after a cancelled await, could be overtaken).
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        if args and getattr(fn, "__name__", None) == "execute":
            statement = args[0]
            if isinstance(statement, str) and statement.startswith("BEGIN IMMEDIATE"):
                return await self._begin_immediate(self._connection, fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def _begin_immediate(
        self, connection: sqlite3.Connection, begin: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + SQLITE_BUSY_TIMEOUT_MS / 1000
        delays = iter(_BUSY_DELAYS_S)
        connection.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    return begin(*args, **kwargs)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                        raise
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        raise
                await asyncio.sleep(min(next(delays, _BUSY_DELAYS_S[-1]), remaining))
        finally:
            connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _sqlite_connector(
    database_url: str, connection_class: type[InlineSqliteConnection]
) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    path = make_url(database_url).database or ""

    async def connect() -> aiosqlite.Connection:
        # Not checking the thread: sqlite3 is called from the loop's thread.
        return await connection_class(lambda: sqlite3.connect(path, check_same_thread=False))

    return connect


def create_engine(
    database_url: str, *, pool_size: int = 10, echo: bool = False, read_only: bool = False
) -> AsyncEngine:
    """An engine; `read_only` gives one whose connections refuse writes, for read requests.

    PostgreSQL read-only: autocommit, so a read is one round trip instead of BEGIN, the
    statements and COMMIT (under READ COMMITTED every statement takes its own snapshot
    anyway, so reads see what they would have seen in a transaction), and
    `default_transaction_read_only`, so that even an implicit transaction refuses a write.
    No pre-ping either: a connection lost with the server fails one request with a 503 and
    SQLAlchemy then replaces the pool's connections.

    hide_parameters: statement parameters (password and key hashes among them) appear in no
    log line and no error message.
    """
    if database_url.startswith("sqlite"):
        in_memory = make_url(database_url).database in (None, "", ":memory:")
        _create_private_file(database_url)
        if read_only and not in_memory:
            engine = create_async_engine(
                database_url,
                echo=echo,
                hide_parameters=True,
                async_creator=_sqlite_connector(database_url, InlineSqliteConnection),
                # As many as PostgreSQL would keep: one opened past these is closed again on
                # its return, and opening one costs more than the read it serves.
                pool_size=pool_size,
                # The rollback on return stays: a SELECT whose rows were not all read keeps
                # its snapshot open even in autocommit, and the next request would read it.
                isolation_level="AUTOCOMMIT",
            )
        elif in_memory:
            engine = create_async_engine(database_url, echo=echo, hide_parameters=True)
        else:
            # One connection for the process's writes: SQLite lets one writer at a time in,
            # and requests queue for it here, in order, waking as soon as it is free. With a
            # connection each they queued in SQLite's busy handler instead, each sleeping
            # 1 ms, 2, 5, ... up to 100 ms between tries and losing to later arrivals: a
            # p99 of ~1 s for 16 writers whose transactions take ~2 ms. Waiting longer than
            # SQLite would (busy timeout) is the same 503.
            engine = create_async_engine(
                database_url,
                echo=echo,
                hide_parameters=True,
                async_creator=_sqlite_connector(database_url, WriteSqliteConnection),
                pool_size=1,
                max_overflow=0,
                pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            )
        _configure_sqlite(engine.sync_engine, read_only=read_only)
        return engine
    if read_only:
        return create_async_engine(
            database_url,
            echo=echo,
            hide_parameters=True,
            pool_size=pool_size,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,  # autocommit: no transaction to roll back
            connect_args={"options": "-c default_transaction_read_only=on"},
        )
    return create_async_engine(
        database_url, echo=echo, pool_size=pool_size, pool_pre_ping=True, hide_parameters=True
    )


def create_inline_read_engine(database_url: str, *, pool_size: int = 10) -> Engine | None:
    """On a SQLite file, a synchronous engine for `read_connection`: its reads run in the
    event loop's thread with no greenlet and no aiosqlite in between. A read in WAL mode never
    waits for a lock, so the loop is blocked for the query only, as with the read engine's
    `InlineSqliteConnection`, at about half the cost (docs/decisions.md, "The request
    path"). None elsewhere: PostgreSQL's reads do wait for the network, and an in-memory
    database is private to the one connection that opened it."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    _create_private_file(database_url)
    engine = create_sync_engine(
        url.set(drivername="sqlite"),
        hide_parameters=True,
        pool_size=pool_size,
        # A checkout must never wait: it would block the loop, and with it whoever would
        # return a connection. Past `pool_size` (a route awaiting something real while it
        # holds one), more are opened and closed again.
        max_overflow=-1,
        isolation_level="AUTOCOMMIT",
        # Opened and used in the loop's thread; disposed there too.
        connect_args={"check_same_thread": False},
    )
    _configure_sqlite(engine, read_only=True)
    return engine


def _create_private_file(database_url: str) -> None:
    """A new SQLite database file is created readable by its owner only (SQLite gives its
    -wal and -shm files the same mode)."""
    path = make_url(database_url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except FileNotFoundError:  # its directory does not exist: SQLite will say so
        pass


def create_sessionmaker(bind: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind, expire_on_commit=False)


@asynccontextmanager
async def transaction_scope(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Commit when the block succeeds; roll back when it raises (unless the error keeps changes)."""
    try:
        yield session
    except TandemError as exc:
        await (session.commit() if exc.keeps_changes else session.rollback())
        raise
    except BaseException:
        await session.rollback()
        raise
    else:
        # A session that never began a transaction (a request answered from caches) has
        # nothing to commit.
        if session.in_transaction():
            await session.commit()
            await publish_changes(session)


def bind_session_info(sessionmaker: async_sessionmaker[AsyncSession], **values: Any) -> None:
    """Every session `sessionmaker` makes from now on carries `values` in its `info`."""
    sessionmaker.configure(info={**sessionmaker.kw.get("info", {}), **values})


# Requests that change nothing (RFC 9110 safe methods): they run on the read-only engine.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request; read-only for a safe method."""
    if request.method in READ_METHODS:
        # Nothing to commit, and returning a read connection does no I/O (`read_connection`):
        # closed at once, not in a task of its own (~0.3 ms a request less).
        session = request.app.state.read_sessionmaker()
        try:
            yield session
        finally:
            await session.close()
        return
    async with request.app.state.sessionmaker() as session, transaction_scope(session):
        yield session


# scope="function": the commit happens before the response is sent, so a failed commit is
# reported to the client instead of being lost after a 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


class ReadConnection(Protocol):
    """What a read route's statements run on (`read_connection`): an `AsyncConnection`, or on
    SQLite a synchronous connection behind the same `await connection.execute(...)`."""

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[*tuple[Any, ...]]: ...


def read_connection(request: Request) -> AbstractAsyncContextManager[ReadConnection]:
    """`async with read_connection(request) as connection:` a connection that only reads,
    for a route that reads plain columns (Core): no session to build, no transaction to begin
    or commit (it autocommits). On a SQLite file it is a connection of the app's
    `inline_read_engine`, elsewhere one of its read-only engine.

    Opened in the route rather than injected: FastAPI's handling of a dependency that yields
    (an exit stack, a shielded exit) and SQLAlchemy's `async with engine.connect()` (which
    closes in a task of its own) cost ~0.15 ms a request between them, more than a small
    read itself. Closing at once is safe here: returning a read connection to its pool does
    no I/O (no reset on PostgreSQL; a rollback in the loop's thread on SQLite), so a
    cancellation cannot stop it halfway.
    """
    override = request.app.dependency_overrides.get(get_read_connection)
    if override is not None:
        return asynccontextmanager(override)(request)
    inline: Engine | None = request.app.state.inline_read_engine
    if inline is not None:
        return _InlineReadConnection(inline)
    return _ReadConnection(request.app.state.read_engine)


class _ReadConnection:
    __slots__ = ("_connection", "_engine")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def __aenter__(self) -> AsyncConnection:
        self._connection = await self._engine.connect()
        return self._connection

    async def __aexit__(self, *exc_info: object) -> None:
        await self._connection.close()


class _InlineReadConnection:
    """A connection of a synchronous SQLite engine as a `ReadConnection`."""

    __slots__ = ("_connection", "_engine")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def __aenter__(self) -> "_InlineReadConnection":
        self._connection = self._engine.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._connection.close()

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[*tuple[Any, ...]]:
        return self._connection.execute(statement, parameters)


async def get_read_connection(request: Request) -> AsyncIterator[ReadConnection]:
    """`read_connection` as an async generator: the hook the tests replace
    (`app.dependency_overrides[get_read_connection]`) to read inside their transaction."""
    async with read_connection(request) as connection:
        yield connection


# --- the two concurrency idioms: the database, not a prior SELECT, decides races ---------------


@asynccontextmanager
async def unique_or_conflict(
    session: AsyncSession, conflict: str | Conflict
) -> AsyncIterator[None]:
    """Runs the block in a savepoint and flushes it: a unique constraint it breaks (a race
    lost to another request, or a plain duplicate) is a 409 with `conflict`, and the caller's
    transaction stays usable."""
    try:
        async with session.begin_nested():
            yield
    except IntegrityError as exc:
        raise (Conflict(conflict) if isinstance(conflict, str) else conflict) from exc


async def insert_row(session: AsyncSession, instance: Base) -> None:
    """Inserts the row `instance` describes, every column of which the caller has set, with
    one Core INSERT in the session's transaction. `instance` stays out of the session: it is
    a record of what was written (change the row with an UPDATE, or load it with `get`).

    For a hot path's one new row: the unit of work's flush of a single object costs about
    twice the INSERT itself. Columns set to None are left out of the INSERT, so they are SQL
    NULL as the ORM would write them (a JSON column would otherwise hold JSON null); an unset
    column, or None in a column that has a default, is refused rather than written wrong."""
    mapper = inspect(type(instance))
    values = inspect(instance).dict
    wrong = [
        c.key
        for c in mapper.column_attrs
        if c.key not in values or (values[c.key] is None and c.columns[0].default is not None)
    ]
    if wrong:
        raise ValueError(f"insert_row: {type(instance).__name__} needs {', '.join(wrong)}")
    row = {
        c.columns[0].key: values[c.key] for c in mapper.column_attrs if values[c.key] is not None
    }
    await session.execute(insert(cast(Table, mapper.local_table)), row)


async def compare_and_set(session: AsyncSession, statement: Update) -> bool:
    """Runs a guarded UPDATE (its WHERE restates the state read) and says whether it changed
    exactly one row: False means someone changed that row first, and nothing was written."""
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount == 1
