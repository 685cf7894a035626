"""The read routes' direct path: their statements run on the driver's own connection.

`db.read_connection` hands a read route a connection of the app's `DirectReads`: on
PostgreSQL one of a psycopg pool, on a SQLite file a sqlite3 connection of a synchronous
engine's pool, used in the event loop's thread (a read in WAL mode never waits for a lock).
Why not SQLAlchemy's execution: for a small read it cost more than the read itself (on
PostgreSQL the asyncio layer's greenlet switches, checkout and result set-up; on SQLite the
Connection and the execution context), ~40 % of a job's detail on PostgreSQL and ~15 % on
SQLite (docs/benchmarks.md, eighth pass).

What stays SQLAlchemy's: each statement is compiled by the database's dialect (once, then
kept), and its column types convert every parameter and every value read, so that a row read
here equals the row `Connection.execute` returns, field names and types included;
tests/integration/test_direct_reads.py holds that for each statement of the read path.
"""

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool
from psycopg.pq import ExecStatus
from sqlalchemy import Engine, Executable, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, IteratorResult, Result
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from tandem import sqlite

if TYPE_CHECKING:
    from tandem.db import ReadConnection

# The server refuses a write on these connections, as on the read-only engine's.
POSTGRES_READ_ONLY = "-c default_transaction_read_only=on"
TUPLES_OK = ExecStatus.TUPLES_OK
# Past this a read is a 503 with Retry-After (the database is gone, or every connection is
# busy), not a request hanging for psycopg's default 30 s.
CHECKOUT_TIMEOUT_SECONDS = 5.0
# Statements are module-level constants of the read routes; a bound keeps a caller that builds
# one per request from growing the cache without end.
MAX_COMPILED = 256


@dataclass(slots=True)
class CompiledRead:
    """A statement as the driver runs it, with its types' conversions. `metadata` (the rows'
    keys: the names the statement gives its columns, as SQLAlchemy's results have them) is
    read off the first result."""

    sql: str
    compiled: SQLCompiler
    bind_processors: dict[str, Callable[[Any], Any]]
    result_processors: Sequence[Any] | None  # a processor or None per column
    metadata: SimpleResultMetaData | None = None

    def parameters(self, values: Mapping[str, Any] | None) -> MutableMapping[str, Any]:
        parameters = self.compiled.construct_params(dict(values) if values else None)
        for name, process in self.bind_processors.items():
            if name in parameters:  # `binds` also lists some that are not rendered
                parameters[name] = process(parameters[name])
        return parameters

    def positional(self, values: Mapping[str, Any] | None) -> tuple[Any, ...]:
        parameters = self.parameters(values)
        return tuple(parameters[name] for name in self.compiled.positiontup or ())

    def result(
        self, cursor: DBAPICursor | psycopg.AsyncCursor[Any], rows: list[Any]
    ) -> Result[Any]:
        if self.metadata is None:
            # SQLAlchemy's rows apply the processors as they are made (in its compiled code).
            self.metadata = SimpleResultMetaData(
                [c[0] for c in cursor.description or ()], _processors=self.result_processors
            )
        return IteratorResult(self.metadata, iter(rows))


def compile_read(statement: Executable, dialect: Dialect) -> CompiledRead:
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if compiled.literal_execute_params or compiled.post_compile_params:
        # Rendered at execution time by SQLAlchemy (an IN list, say): not for this path.
        raise ValueError("The direct read path takes no expanding or literal parameters")
    bind_processors: dict[str, Callable[[Any], Any]] = {}
    for key, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            bind_processors[compiled.escaped_bind_names.get(key, key)] = process
    columns = list(getattr(statement, "selected_columns", ()))
    processors = [
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
    ]
    return CompiledRead(
        sql=compiled.string,
        compiled=compiled,
        bind_processors=bind_processors,
        result_processors=processors if any(processors) else None,
    )


class DirectReads(ABC):
    """The app's direct read connections (`connect()`), and the statements compiled for them."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: dict[int, tuple[Executable, CompiledRead]] = {}

    def compiled(self, statement: Executable) -> CompiledRead:
        kept = self._compiled.get(id(statement))
        if kept is not None and kept[0] is statement:
            return kept[1]
        if len(self._compiled) >= MAX_COMPILED:
            self._compiled.clear()
        compiled = compile_read(statement, self._dialect)
        self._compiled[id(statement)] = (statement, compiled)
        return compiled

    @abstractmethod
    def connect(self) -> AbstractAsyncContextManager["ReadConnection"]:
        """`async with reads.connect() as connection:` one read-only connection. Database
        errors come out as SQLAlchemy's (errors.py maps a lost connection to a 503), with no
        parameter in their text."""

    @property
    @abstractmethod
    def checked_out(self) -> int: ...

    async def open(self) -> None:  # noqa: B027 (most have nothing to open)
        """Called once, in the app's lifespan, before the first request."""

    @abstractmethod
    async def close(self) -> None: ...


def create_direct_reads(
    database_url: str, read_engine_dialect: Dialect, *, pool_size: int
) -> DirectReads | None:
    """PostgreSQL's or a SQLite file's `DirectReads`; None for an in-memory SQLite database
    (private to the one connection that opened it: reads go through the read-only engine)."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresReads(database_url, read_engine_dialect, pool_size=pool_size)
    engine = sqlite.create_inline_read_engine(database_url, pool_size=pool_size)
    return SqliteReads(engine) if engine is not None else None


# --- PostgreSQL: a psycopg pool --------------------------------------------------------------


class PostgresReads(DirectReads):
    def __init__(self, database_url: str, dialect: Dialect, *, pool_size: int) -> None:
        super().__init__(dialect)
        conninfo = make_url(database_url).set(drivername="postgresql")
        self.pool = psycopg_pool.AsyncConnectionPool(
            conninfo.render_as_string(hide_password=False),
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "options": POSTGRES_READ_ONLY},
            timeout=CHECKOUT_TIMEOUT_SECONDS,
            open=False,
            name="tandem-read",
        )
        self._checked_out = 0

    async def open(self) -> None:
        # Does not wait for the server: a request finds out whether it is there.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @property
    def checked_out(self) -> int:
        return self._checked_out

    def connect(self) -> "_PostgresConnection":
        return _PostgresConnection(self)

    async def checkout(self) -> psycopg.AsyncConnection[Any]:
        try:
            connection = await self.pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise sa_exc.TimeoutError("No read connection available") from exc
        self._checked_out += 1
        return connection

    async def checkin(self, connection: psycopg.AsyncConnection[Any]) -> None:
        # An idle autocommit connection goes back with no I/O.
        self._checked_out -= 1
        await self.pool.putconn(connection)

    async def lost(self) -> None:
        """A connection failed: the others may have been cut off with it (a restarted
        server). They are checked before a request gets one, as SQLAlchemy's pool does when
        it sees a disconnect."""
        await self.pool.check()


class _PostgresConnection:
    __slots__ = ("_connection", "_reads")

    def __init__(self, reads: PostgresReads) -> None:
        self._reads = reads

    async def __aenter__(self) -> "_PostgresConnection":
        self._connection = await self._reads.checkout()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._reads.checkin(self._connection)

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[*tuple[Any, ...]]:
        compiled = self._reads.compiled(statement)
        try:
            cursor = await self._connection.execute(compiled.sql, compiled.parameters(parameters))
            # Not `cursor.description`: psycopg builds a Column object per column on each look.
            result = cursor.pgresult
            rows = await cursor.fetchall() if result and result.status == TUPLES_OK else []
        except psycopg.OperationalError as exc:
            await self._reads.lost()
            raise sa_exc.OperationalError(compiled.sql, None, exc) from exc
        except psycopg.Error as exc:
            raise sa_exc.DBAPIError(compiled.sql, None, exc) from exc
        return compiled.result(cursor, rows)


# --- SQLite: sqlite3 connections, in the loop's thread ---------------------------------------


class SqliteReads(DirectReads):
    """The connections of `sqlite.create_inline_read_engine`'s pool (`query_only`, WAL, the
    busy timeout), checked out raw: no SQLAlchemy Connection around them."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine.dialect)
        self.engine = engine

    @property
    def checked_out(self) -> int:
        return self.engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]

    def connect(self) -> "_SqliteConnection":
        return _SqliteConnection(self)

    async def close(self) -> None:
        self.engine.dispose()


class _SqliteConnection:
    __slots__ = ("_connection", "_reads")

    def __init__(self, reads: SqliteReads) -> None:
        self._reads = reads

    async def __aenter__(self) -> "_SqliteConnection":
        self._connection: PoolProxiedConnection = self._reads.engine.raw_connection()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._connection.close()

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[*tuple[Any, ...]]:
        compiled = self._reads.compiled(statement)
        cursor = self._connection.cursor()
        try:
            cursor.execute(compiled.sql, compiled.positional(parameters))
            rows = list(cursor.fetchall()) if cursor.description is not None else []
            return compiled.result(cursor, rows)
        except sqlite3.OperationalError as exc:
            raise sa_exc.OperationalError(compiled.sql, None, exc) from exc
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError(compiled.sql, None, exc) from exc
        finally:
            cursor.close()
