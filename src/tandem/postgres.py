"""PostgreSQL's direct read path: the read routes' statements run on psycopg itself.

On PostgreSQL `db.read_connection` hands a read route a connection of `DirectReadPool`, a
psycopg pool, rather than one of SQLAlchemy's asyncio engine. Why: through the asyncio layer
a statement costs two to three times its psycopg cost in CPU (greenlet switches, the pool's
checkout, the result's set-up): about 40 % of a job's detail (docs/benchmarks.md, eighth
pass). What stays SQLAlchemy's: each statement is compiled by its PostgreSQL dialect (once,
then kept), and its types convert every parameter and every value read, so that a row read
here equals the row `AsyncConnection.execute` returns; a test holds that for each statement
of the read path (tests/integration/test_database.py).

The connections are those of the read-only engine (`db.create_engine(read_only=True)`):
autocommit, and `default_transaction_read_only`, so the server refuses a write.
"""

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool
from sqlalchemy import Executable, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, IteratorResult, Result
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"
CHECKOUT_TIMEOUT_SECONDS = 5.0
# Statements are module-level constants of the read routes; a bound keeps a caller that builds
# one per request from growing the cache without end.
MAX_COMPILED = 256


@dataclass(slots=True)
class _Compiled:
    """A statement as psycopg runs it, with its types' conversions. `metadata` (the rows'
    keys: the names the statement gives its columns, as SQLAlchemy's results have them) is
    read off the first result."""

    sql: str
    compiled: SQLCompiler
    bind_processors: dict[str, Callable[[Any], Any]]
    result_processors: tuple[Callable[[Any], Any] | None, ...] | None
    metadata: SimpleResultMetaData | None = None

    def result(self, cursor: psycopg.AsyncCursor[Any], rows: list[Any]) -> Result[Any]:
        if self.metadata is None:
            self.metadata = SimpleResultMetaData([c.name for c in cursor.description or ()])
        return IteratorResult(self.metadata, iter(self.rows(rows)))

    def parameters(self, values: Mapping[str, Any] | None) -> MutableMapping[str, Any]:
        parameters = self.compiled.construct_params(dict(values) if values else None)
        for name, process in self.bind_processors.items():
            if parameters.get(name) is not None:
                parameters[name] = process(parameters[name])
        return parameters

    def rows(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        processors = self.result_processors
        if processors is None:
            return rows
        return [
            tuple(
                value if process is None else process(value)
                for process, value in zip(processors, row, strict=True)
            )
            for row in rows
        ]


def compile_statement(statement: Executable, dialect: Dialect) -> _Compiled:
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
    processors = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
    )
    return _Compiled(
        sql=compiled.string,
        compiled=compiled,
        bind_processors=bind_processors,
        result_processors=processors if any(processors) else None,
    )


def create_direct_read_pool(
    database_url: str, dialect: Dialect, *, pool_size: int
) -> "DirectReadPool | None":
    """On PostgreSQL (psycopg), the pool of `db.read_connection`; None elsewhere."""
    if make_url(database_url).get_backend_name() != "postgresql":
        return None
    return DirectReadPool(database_url, dialect, pool_size=pool_size)


class DirectReadPool:
    """Read-only psycopg connections for `db.read_connection` on PostgreSQL."""

    def __init__(self, database_url: str, dialect: Dialect, *, pool_size: int) -> None:
        conninfo = make_url(database_url).set(drivername="postgresql")
        self._pool = psycopg_pool.AsyncConnectionPool(
            conninfo.render_as_string(hide_password=False),
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "options": READ_ONLY_OPTIONS},
            # Past this a read is a 503 with Retry-After (the database is gone, or every
            # connection is busy): not a request hanging for psycopg's default 30 s.
            timeout=CHECKOUT_TIMEOUT_SECONDS,
            open=False,
            name="tandem-read",
        )
        self._dialect = dialect
        self._compiled: dict[int, tuple[Executable, _Compiled]] = {}

    async def open(self) -> None:
        # Does not wait for the server: a request finds out whether it is there.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @property
    def checked_out(self) -> int:
        stats = self._pool.get_stats()
        return stats["pool_size"] - stats["pool_available"]

    def connect(self) -> "DirectReadConnection":
        return DirectReadConnection(self)

    def compiled(self, statement: Executable) -> _Compiled:
        kept = self._compiled.get(id(statement))
        if kept is not None and kept[0] is statement:
            return kept[1]
        if len(self._compiled) >= MAX_COMPILED:
            self._compiled.clear()
        compiled = compile_statement(statement, self._dialect)
        self._compiled[id(statement)] = (statement, compiled)
        return compiled

    async def _get(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await self._pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise sa_exc.TimeoutError("No read connection available") from exc

    async def _put(self, connection: psycopg.AsyncConnection[Any]) -> None:
        await self._pool.putconn(connection)

    async def _lost(self) -> None:
        """A connection failed: the others may have been cut off with it (a restarted
        server). They are checked before a request gets one (SQLAlchemy's pool does the same
        when it sees a disconnect)."""
        await self._pool.check()


class DirectReadConnection:
    """`async with pool.connect() as connection:` one read-only connection, as a
    `db.ReadConnection`. Database errors come out as SQLAlchemy's (errors.py maps a lost
    connection to a 503), with no parameter in their text."""

    __slots__ = ("_connection", "_pool")

    def __init__(self, pool: DirectReadPool) -> None:
        self._pool = pool

    async def __aenter__(self) -> "DirectReadConnection":
        self._connection = await self._pool._get()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Returning an idle autocommit connection does no I/O.
        await self._pool._put(self._connection)

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[*tuple[Any, ...]]:
        compiled = self._pool.compiled(statement)
        try:
            cursor = await self._connection.execute(compiled.sql, compiled.parameters(parameters))
            rows = await cursor.fetchall() if cursor.description is not None else []
        except psycopg.OperationalError as exc:
            await self._pool._lost()
            raise sa_exc.OperationalError(compiled.sql, None, exc) from exc
        except psycopg.Error as exc:
            raise sa_exc.DBAPIError(compiled.sql, None, exc) from exc
        return compiled.result(cursor, rows)
