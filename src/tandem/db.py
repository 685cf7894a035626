"""Engine, sessions and the declarative base.

The transaction belongs to the request (or the job): `get_session` commits when the handler
succeeds and rolls back when it raises. Services call `flush()`, never `commit()`.

A request that cannot change anything (GET, HEAD, OPTIONS) gets its session from a second,
read-only engine (`create_engine(..., read_only=True)`): on SQLite its transactions begin
DEFERRED and never take the write lock, on PostgreSQL it runs without BEGIN/COMMIT round
trips; on both the database itself refuses a write (docs/decisions.md, "The request path").
A route that reads plain columns opens `read_connection` itself: its statements run on the
driver's connection (tandem/direct_reads.py).
"""

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol, cast

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
from sqlalchemy.engine import CursorResult, Dialect, Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from tandem import sqlite
from tandem.direct_reads import DirectReads
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

# Execution options for a read-only connection: on SQLite it does not take the write lock.
READ_ONLY = {sqlite.BEGIN_OPTION: "DEFERRED"}


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


def new_id() -> uuid.UUID:
    """A new row's id: a UUID of version 7 (RFC 9562), the time in milliseconds in its first
    48 bits, 74 random bits after it. A table's new rows sort after its old ones, so an
    insert lands at the end of the primary key's index, not on a random page of it (on
    SQLite a job's insert and commit cost half: docs/benchmarks.md, tenth pass). Python has
    `uuid.uuid7` from 3.14 on."""
    milliseconds = time.time_ns() // 1_000_000
    random_bits = secrets.randbits(74)
    return uuid.UUID(
        int=milliseconds << 80
        | 0x7 << 76  # version
        | (random_bits >> 62) << 64  # 12 random bits
        | 0b10 << 62  # variant (RFC 9562)
        | random_bits & (2**62 - 1)  # 62 random bits
    )


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


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
        return sqlite.create_async_engine(
            database_url, pool_size=pool_size, echo=echo, read_only=read_only
        )
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
    """What a read route's statements run on (`read_connection`): a connection of the app's
    `DirectReads` (tandem/direct_reads.py), or an `AsyncConnection` (an in-memory SQLite
    database; the tests' transaction)."""

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[*tuple[Any, ...]]: ...


def read_connection(request: Request) -> AbstractAsyncContextManager[ReadConnection]:
    """`async with read_connection(request) as connection:` a connection that only reads,
    for a route that reads plain columns (Core): no session to build, no transaction to begin
    or commit (it autocommits). On PostgreSQL and on a SQLite file it is one of the app's
    `direct_reads`, which run Core statements on the driver's connection; on an in-memory
    SQLite database one of its read-only engine.

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
    direct: DirectReads | None = request.app.state.direct_reads
    if direct is not None:
        return direct.connect()
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
