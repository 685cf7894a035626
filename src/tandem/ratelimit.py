"""Rate limiting: one limiter on the `limits` library, in memory or shared through Redis.

Strategy: moving window. It counts exactly the hits of the last period, so "5/minute" never
lets 10 login attempts through around a window boundary, as a fixed window does, and the
moment the oldest counted hit leaves the window is exactly when the next one is allowed,
which makes Retry-After exact. The sliding window counter would store two counters instead
of one timestamp per hit, but it only approximates the count and its reset time. The cost
of the moving window (at most `limit` timestamps per key, kept by an atomic Lua script on
Redis) is small at the limits Tandem uses.

Headers: `X-RateLimit-Limit` (hits per period), `X-RateLimit-Remaining`, and
`X-RateLimit-Reset`, the epoch second (an integer, rounded up) at which the oldest counted
hit leaves the window and one unit of budget comes back. Over the limit: 429 with
`Retry-After` in whole seconds, at least 1.

Redis down: fail open to a per-process memory budget. Rate limits protect capacity and slow
brute force; they are not an authorisation boundary, so an outage of Redis must not take
login and every agent call down with it (failing closed would). Falling back to memory
rather than to no limit at all keeps the brake on login guessing: the budget becomes
`limit` per process instead of `limit` shared. The first failure logs a warning; Redis is
tried again after `REDIS_RETRY_SECONDS`, and every call within that time goes straight to
memory, so an unreachable or hung Redis costs at most one timeout
(`REDIS_TIMEOUT_SECONDS`) per interval.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import coredis
from fastapi import Request, Response
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from tandem.errors import RateLimited
from tandem.settings import Settings

log = logging.getLogger(__name__)

# A rate-limit check sits in front of every limited request: a slow Redis must not stall it.
REDIS_TIMEOUT_SECONDS = 1.0
REDIS_RETRY_SECONDS = 5.0
REDIS_SCHEMES = ("redis://", "rediss://")


@dataclass(frozen=True)
class RateLimitState:
    """What is left of one budget after a hit."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }

    def retry_after(self) -> int:
        """Whole seconds until one unit comes back, rounded up and never 0."""
        return max(1, math.ceil(self.reset_at - time.time()))


class RateLimiter:
    """A moving-window limiter on memory ("memory://") or Redis ("redis://host:port/db").

    On Redis the keys read `<key_prefix>:LIMITER/<scope>/<key>/<amount>/1/minute` and expire
    with their window; processes with the same URL and prefix share every budget.
    """

    def __init__(self, storage_uri: str, *, key_prefix: str = "tandem") -> None:
        # The memory limiter is the storage for "memory://" and the fallback while Redis is
        # down (see the module docstring).
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        self._pool: coredis.ConnectionPool | None = None
        self._redis_retry_at = 0.0
        if storage_uri.startswith(REDIS_SCHEMES):
            # Our own pool, so that close() can disconnect it and the timeouts are ours.
            self._pool = coredis.ConnectionPool.from_url(
                storage_uri,
                connect_timeout=REDIS_TIMEOUT_SECONDS,
                stream_timeout=REDIS_TIMEOUT_SECONDS,
            )
            storage = RedisStorage(
                f"async+{storage_uri}",
                wrap_exceptions=True,  # every client error arrives as StorageError
                key_prefix=key_prefix,
                # limits types **options too narrowly; it documents connection_pool.
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
            self._redis = MovingWindowRateLimiter(storage)
        elif not storage_uri.startswith("memory://"):
            raise ValueError(
                f"Unsupported rate-limit storage {storage_uri.split('://')[0]!r}: "
                "use memory:// or redis://host:port/db"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimiter":
        return cls(settings.redis_url or "memory://")

    async def hit(self, limit: str, scope: str, key: str) -> RateLimitState:
        """Consumes one unit of `limit` for (scope, key); raises RateLimited when none is left."""
        item = parse(limit)
        allowed, state = await self._hit(item, scope, key)
        if not allowed:
            retry = state.retry_after()
            unit = "second" if retry == 1 else "seconds"
            raise RateLimited(
                f"Rate limit exceeded ({item}). Retry in {retry} {unit}.",
                headers={**state.headers(), "Retry-After": str(retry)},
            )
        return state

    async def _hit(self, item: RateLimitItem, scope: str, key: str) -> tuple[bool, RateLimitState]:
        if self._redis is not None and time.monotonic() >= self._redis_retry_at:
            try:
                # Our own deadline: the client enforces its timeouts only seconds late.
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    return await self._hit_with(self._redis, item, scope, key)
            except (StorageError, TimeoutError) as exc:
                self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
                reason = (
                    repr(exc.storage_error)
                    if isinstance(exc, StorageError)
                    else f"no answer within {REDIS_TIMEOUT_SECONDS:g} s"
                )
                log.warning(
                    "Rate-limit storage (Redis) failed (%s); using per-process memory limits "
                    "for the next %g s",
                    reason,
                    REDIS_RETRY_SECONDS,
                )
        return await self._hit_with(self._memory, item, scope, key)

    @staticmethod
    async def _hit_with(
        strategy: MovingWindowRateLimiter, item: RateLimitItem, scope: str, key: str
    ) -> tuple[bool, RateLimitState]:
        allowed = await strategy.hit(item, scope, key)
        stats = await strategy.get_window_stats(item, scope, key)
        return allowed, RateLimitState(item.amount, stats.remaining, stats.reset_time)

    async def ping(self) -> None:
        """Readiness: raises the Redis client's error when Redis does not answer."""
        if self._pool is not None:
            # Not limits' storage.check(): it swallows the error that says what is wrong.
            await coredis.Redis(connection_pool=self._pool).ping()

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()


def client_address(request: Request) -> str:
    """The peer's address. Behind a proxy, let uvicorn rewrite it from X-Forwarded-For
    (`--forwarded-allow-ips`): trusting that header here would let any client pick its key."""
    return request.client.host if request.client else "unknown"


def apply_headers(response: Response, state: RateLimitState) -> None:
    response.headers.update(state.headers())


def rate_limit(
    scope: str,
    limit_of: Callable[[Settings], str],
    key_of: Callable[[Request], str | Awaitable[str]],
) -> Callable[..., Awaitable[None]]:
    """A dependency consuming one unit of `limit_of(settings)` for (scope, key_of(request)).

    The X-RateLimit-* headers go on the response when the path function returns a model or
    a dict; a path function returning a `Response` itself must call `apply_headers`.
    """

    async def dependency(request: Request, response: Response) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        settings: Settings = request.app.state.settings
        key = key_of(request)
        if not isinstance(key, str):
            key = await key
        apply_headers(response, await limiter.hit(limit_of(settings), scope, key))

    return dependency
