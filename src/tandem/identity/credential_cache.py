"""Resolved credentials kept between requests, dropped the moment any credential changes.

An authenticated request resolves its API key or access token to a principal: a query
joining the key or login to its user. Most requests come from the same few credentials, so
the principal is kept in memory, stamped with the *credential epoch* read before its
query, and served again only while the epoch is unchanged:

- Any write that can change what a credential resolves to (an UPDATE or DELETE of a user, an
  organization, an API key or a login, through the ORM or a bulk statement) bumps the epoch
  of this process when it is flushed and again when it commits (`_credentials_written`).
  Bumping at flush covers a transaction that others join (the tests' sessions); bumping
  after the commit covers a request that read the old row while the write was in flight.
- With Redis configured (`tandem serve --workers N` needs it), the epoch is also a token in
  Redis, replaced by every transaction that changed a credential once it has committed and
  before its response is sent (`transaction_scope`), and read for every request (requests
  made together share a read, `SharedEpoch`): a logout in one process takes effect at the
  next request in every other. Redis not answering: nothing is served from the cache until
  it answers again.
- An entry serves at most `ENTRY_SECONDS`, and never past the key's expiry, the access
  token's or the login's end: a change made behind Tandem's back (a manual UPDATE, a Redis
  outage at the moment of a bump) is seen within that bound.

Inserts change nothing: a new key or login has no entry yet, and failures are never cached.
"""

import logging
import secrets
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import coredis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from tandem.batching import Batcher

log = logging.getLogger(__name__)

# The tables whose rows a principal is resolved from.
CREDENTIAL_TABLES = frozenset({"users", "organizations", "api_keys", "login_sessions"})
ENTRY_SECONDS = 10.0
MAX_ENTRIES = 10_000
REDIS_KEY = "tandem:credential-epoch"
REDIS_TIMEOUT_SECONDS = 1.0
CHANGED_KEY = "tandem_credentials_changed"
SHARED_EPOCH_KEY = "tandem_shared_credential_epoch"

_local_epoch = 0


def _bump_local() -> None:
    global _local_epoch
    _local_epoch += 1


def _credentials_written(session: Session) -> None:
    _bump_local()
    session.info[CHANGED_KEY] = True


@event.listens_for(Session, "after_flush")
def _on_flush(session: Session, _flush: UOWTransaction) -> None:
    # After the flush, `dirty` and `deleted` still hold what it wrote.
    for instance in (*session.dirty, *session.deleted):
        if getattr(instance, "__tablename__", None) in CREDENTIAL_TABLES:
            _credentials_written(session)
            return


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in CREDENTIAL_TABLES:
            _credentials_written(state.session)


@event.listens_for(Session, "after_commit")
def _on_commit(session: Session) -> None:
    if session.info.get(CHANGED_KEY):
        _bump_local()


@event.listens_for(Session, "after_rollback")
def _on_rollback(session: Session) -> None:
    session.info.pop(CHANGED_KEY, None)


class SharedEpoch:
    """The epoch shared by every process through Redis: a random token, replaced on change
    (a counter could come back to a value some entry was stamped with after Redis lost it).

    Concurrent reads share a GET (`tandem.batching`): a call is answered by a GET sent after
    it was made, so it still sees every change committed before; but a process under load
    sends a GET per round trip, not per request."""

    def __init__(self, redis_url: str) -> None:
        self._pool = coredis.ConnectionPool.from_url(
            redis_url, connect_timeout=REDIS_TIMEOUT_SECONDS, stream_timeout=REDIS_TIMEOUT_SECONDS
        )
        self._redis = coredis.Redis(connection_pool=self._pool, decode_responses=True)
        self._failing = False
        self._read_together: Batcher[None, str | None] = Batcher(self._read_for)

    async def current(self) -> str | None:
        """The token now, or None when Redis does not answer (then nothing is cached)."""
        return await self._read_together(None)

    async def _read_for(self, calls: Sequence[None]) -> list[str | None]:
        return [await self._read()] * len(calls)

    async def _read(self) -> str | None:
        try:
            token = await self._redis.get(REDIS_KEY)
            if token is None:  # never set, or lost with Redis's data
                await self._redis.set(
                    REDIS_KEY, secrets.token_hex(16), condition=coredis.PureToken.NX
                )
                token = await self._redis.get(REDIS_KEY)
        except (coredis.exceptions.RedisError, OSError, TimeoutError) as exc:
            self._warn("read", exc)
            return None
        self._failing = False
        return str(token)

    async def bump(self) -> None:
        try:
            await self._redis.set(REDIS_KEY, secrets.token_hex(16))
        except (coredis.exceptions.RedisError, OSError, TimeoutError) as exc:
            self._warn("replace", exc)

    def _warn(self, what: str, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "Could not %s the credential epoch in Redis (%r): credentials are resolved "
                "from the database on every request until it answers; a change made "
                "meanwhile reaches other processes within %g s",
                what,
                exc,
                ENTRY_SECONDS,
            )

    def close(self) -> None:
        self._pool.disconnect()


async def publish_changes(session: AsyncSession) -> None:
    """After a commit: tells every process that a credential changed, if one did."""
    if session.info.pop(CHANGED_KEY, False):
        shared: SharedEpoch | None = session.info.get(SHARED_EPOCH_KEY)
        if shared is not None:
            await shared.bump()


@dataclass(frozen=True)
class _Entry:
    stamp: tuple[int, str | None]
    value: Any
    serves_until: float  # time.monotonic()
    valid_until: datetime | None  # the credential's own end


Stamp = tuple[int, str | None]


class CredentialCache:
    """Resolved credentials by key (a digest of the secret), served while the epoch holds."""

    def __init__(self, shared: SharedEpoch | None = None) -> None:
        self.shared = shared
        self._entries: dict[Hashable, _Entry] = {}

    async def stamp(self) -> Stamp | None:
        """The epoch to stamp a lookup with, read before it; None: do not use the cache."""
        local = _local_epoch
        if self.shared is None:
            return (local, None)
        token = await self.shared.current()
        return None if token is None else (local, token)

    def get(self, key: Hashable, stamp: Stamp | None, now: datetime) -> Any:
        if stamp is None:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (
            entry.stamp != stamp
            or entry.serves_until <= time.monotonic()
            or (entry.valid_until is not None and entry.valid_until <= now)
        ):
            del self._entries[key]
            return None
        return entry.value

    def put(
        self, key: Hashable, stamp: Stamp | None, value: Any, valid_until: datetime | None
    ) -> None:
        if stamp is None:
            return
        if len(self._entries) >= MAX_ENTRIES:
            # The oldest entry goes first (dicts keep insertion order).
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Entry(stamp, value, time.monotonic() + ENTRY_SECONDS, valid_until)

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()
