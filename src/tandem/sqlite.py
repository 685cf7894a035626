"""SQLite: its engines and the connections that run sqlite3 in the event loop's own thread.

`tandem.db.create_engine` gives a SQLite URL's async engines from here, and
`tandem.direct_reads` reads through `create_inline_read_engine`'s connections. Why each is as
it is:
docs/decisions.md, "The request path" and "SQLite: one write connection per process".
"""

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import aiosqlite
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as create_async_sqlalchemy_engine
from sqlalchemy.pool import ConnectionPoolEntry

BUSY_TIMEOUT_MS = 5000
# The execution option naming how a transaction begins (`tandem.db.READ_ONLY`: DEFERRED).
BEGIN_OPTION = "sqlite_begin"


def create_async_engine(
    database_url: str, *, pool_size: int = 10, echo: bool = False, read_only: bool = False
) -> AsyncEngine:
    """`tandem.db.create_engine` for a SQLite URL."""
    in_memory = make_url(database_url).database in (None, "", ":memory:")
    _create_private_file(database_url)
    if read_only and not in_memory:
        engine = create_async_sqlalchemy_engine(
            database_url,
            echo=echo,
            hide_parameters=True,
            async_creator=_connector(database_url, InlineSqliteConnection),
            # As many as PostgreSQL would keep: one opened past these is closed again on
            # its return, and opening one costs more than the read it serves.
            pool_size=pool_size,
            # The rollback on return stays: a SELECT whose rows were not all read keeps
            # its snapshot open even in autocommit, and the next request would read it.
            isolation_level="AUTOCOMMIT",
        )
    elif in_memory:
        engine = create_async_sqlalchemy_engine(database_url, echo=echo, hide_parameters=True)
    else:
        # One connection for the process's writes: SQLite lets one writer at a time in,
        # and requests queue for it here, in order, waking as soon as it is free. With a
        # connection each they queued in SQLite's busy handler instead, each sleeping
        # 1 ms, 2, 5, ... up to 100 ms between tries and losing to later arrivals: a
        # p99 of ~1 s for 16 writers whose transactions take ~2 ms. Waiting longer than
        # SQLite would (busy timeout) is the same 503.
        engine = create_async_sqlalchemy_engine(
            database_url,
            echo=echo,
            hide_parameters=True,
            async_creator=_connector(database_url, WriteSqliteConnection),
            pool_size=1,
            max_overflow=0,
            pool_timeout=BUSY_TIMEOUT_MS / 1000,
        )
    _configure(engine.sync_engine, read_only=read_only)
    return engine


def _configure(engine: Engine, *, read_only: bool = False) -> None:
    """SQLAlchemy's documented recipe: let SQLAlchemy, not the sqlite3 driver, emit BEGIN.

    Without it SAVEPOINT does not join the enclosing transaction (a row committed inside a
    test's savepoint would survive the test's rollback), SELECTs run outside transactions, and
    DDL autocommits. Every transaction begins IMMEDIATE: it takes the write lock up front, so
    a read-then-write transaction waits for the lock (busy timeout) instead of failing with
    SQLITE_BUSY when another writer got there first. A pure read may opt out with
    `connection.execution_options(**tandem.db.READ_ONLY)`; every transaction of a `read_only` engine
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
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    if read_only:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


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
        deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_MS / 1000
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
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _connector(
    database_url: str, connection_class: type[InlineSqliteConnection]
) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    path = make_url(database_url).database or ""

    async def connect() -> aiosqlite.Connection:
        # Not checking the thread: sqlite3 is called from the loop's thread.
        return await connection_class(lambda: sqlite3.connect(path, check_same_thread=False))

    return connect


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
    _configure(engine, read_only=True)
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
