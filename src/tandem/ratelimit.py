"""Rate limiting: one moving-window limiter, in this process's memory or shared through Redis.

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

Budgets: a request may draw on several (agent calls per user and per organization; login per
address and e-mail and per address): `hit_all` takes from all or none, and the headers are
those of the budget with least left. A hit may cost more than one unit (content drafts).
Failed logins are counted with `check` before and `record` after the attempt. On Redis,
`hit_all` is one Lua script (`HIT_ALL_SCRIPT`) over the lists `limits` keeps: one round trip
whatever the number of budgets, and all-or-none holds against every other process too
(`limits` offers one budget per call: testing each, then hitting each and reading its window
took six round trips for two budgets, and a budget refused between another's test and hit
left that one charged). Requests made while one such call is under way go together in the
next (`tandem.batching`): the script charges each as if alone, in turn.

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
import functools
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import repeat
from typing import Any, TypeVar, cast

import coredis
import coredis.exceptions
from coredis.commands import Script
from fastapi import Request
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from tandem.batching import Batcher
from tandem.errors import RateLimited
from tandem.http_headers import carry_headers
from tandem.identity.principal import CurrentPrincipal, Principal
from tandem.settings import Settings

log = logging.getLogger(__name__)

# A rate-limit check sits in front of every limited request: a slow Redis must not stall it.
REDIS_TIMEOUT_SECONDS = 1.0
REDIS_RETRY_SECONDS = 5.0
REDIS_SCHEMES = ("redis://", "rediss://")
# How many idle budgets one look at the memory windows may forget (see `_MemoryWindows`).
FORGET_AT_A_LOOK = 32

T = TypeVar("T")

# One call charges a batch of requests (`tandem.batching`), each as if alone, in order.
# KEYS: each request's budgets, request after request: each budget's list in `limits`'
# moving-window layout (the newest hit first, one timestamp per unit, kept to `limit`
# entries). ARGV: now, then per request its number of budgets, its cost, and limit and window
# seconds per budget. Returns per request {0, count, oldest, count, oldest, ...} once every
# budget is charged, or {i, count, oldest} for the first budget i with fewer than `cost` left
# (nothing charged). Timestamps go back as strings: Redis would truncate a Lua number.
HIT_ALL_SCRIPT = """
local now = tonumber(ARGV[1])
local function window(key, limit, expiry)
  local low, high, last = 0, limit - 1, nil
  while low <= high do
    local middle = math.floor((low + high) / 2)
    local hit = tonumber(redis.call('lindex', key, middle))
    if hit and hit >= now - expiry then last = middle; low = middle + 1 else high = middle - 1 end
  end
  if last == nil then return 0, tostring(now) end
  return last + 1, redis.call('lindex', key, last)
end
local function hit_all(first_key, count, cost, first_arg)
  local function budget(i)
    local key = KEYS[first_key + i - 1]
    return key, tonumber(ARGV[first_arg + 2 * i - 2]), tonumber(ARGV[first_arg + 2 * i - 1])
  end
  for i = 1, count do
    local key, limit, expiry = budget(i)
    local blocking = cost <= limit and redis.call('lindex', key, limit - cost)
    if cost > limit or (blocking and tonumber(blocking) >= now - expiry) then
      local used, oldest = window(key, limit, expiry)
      return {i, used, oldest}
    end
  end
  local result = {0}
  for i = 1, count do
    local key, limit, expiry = budget(i)
    for _ = 1, cost do redis.call('lpush', key, ARGV[1]) end
    redis.call('ltrim', key, 0, limit - 1)
    redis.call('expire', key, expiry)
    local used, oldest = window(key, limit, expiry)
    table.insert(result, used)
    table.insert(result, oldest)
  end
  return result
end
local results, first_key, at = {}, 1, 2
while at <= #ARGV do
  local count, cost = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  table.insert(results, hit_all(first_key, count, cost, at + 2))
  first_key, at = first_key + count, at + 2 + 2 * count
end
return results
"""

# One request's part of a HIT_ALL_SCRIPT call: its keys, and its cost then limit and window
# seconds per key.
_RedisHit = tuple[tuple[str, ...], tuple[int, ...]]


@functools.cache
def parse(limit: str) -> RateLimitItem:
    """A limit in the `limits` notation, parsed once (a handful of distinct settings)."""
    return parse_limit(limit)


@dataclass(frozen=True)
class Budget:
    """One budget: `limit` in the `limits` notation ("60/minute"), for `key` within `scope`."""

    limit: str
    scope: str
    key: str


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


@dataclass(frozen=True)
class _Outcome:
    item: RateLimitItem
    state: RateLimitState
    allowed: bool


async def _state(
    strategy: MovingWindowRateLimiter, item: RateLimitItem, budget: Budget
) -> RateLimitState:
    stats = await strategy.get_window_stats(item, budget.scope, budget.key)
    return RateLimitState(item.amount, stats.remaining, stats.reset_time)


def _window_state(item: RateLimitItem, count: Any, oldest: Any) -> RateLimitState:
    """A budget's state from its window as `HIT_ALL_SCRIPT` reads it: how many units are in
    it, and when the oldest of them came in (it leaves the window one period later)."""
    reset_at = float(oldest) + item.get_expiry()
    return RateLimitState(item.amount, max(0, item.amount - int(count)), reset_at)


def _refusal(item: RateLimitItem, state: RateLimitState) -> RateLimited:
    retry = state.retry_after()
    unit = "second" if retry == 1 else "seconds"
    return RateLimited(
        f"Rate limit exceeded ({item}). Retry in {retry} {unit}.",
        headers={**state.headers(), "Retry-After": str(retry)},
    )


class _MemoryWindows:
    """Moving windows in this process's memory: the storage for "memory://", and the fallback
    while Redis is down.

    Per budget, the times of its hits still in the window, oldest first: a hit appends them,
    a look drops from the left what has aged out, so a hit costs O(1) whatever the limit.
    Counted as `limits`' moving window counts (a hit is in the window while it is at most one
    period old) and with the same state, so both storages answer alike. Why not `limits`'
    memory storage: two budgets took six awaited calls through it, each a hit inserting at
    the front of a list as long as the limit allows and raising an IndexError while a budget
    had room, ~25 us of the ~135 us an `/api/v1/agents` request costs (docs/benchmarks.md,
    eleventh pass). Nothing here awaits, so no other request runs in between.
    """

    def __init__(self) -> None:
        # Per period (seconds), each budget's hits, the budget hit least recently first: the
        # budgets whose last hit has left the window are at the front, and each look forgets
        # a few of them there (one per client address that tried to log in once must not stay
        # for the life of the process), never scanning the others.
        self._periods: dict[int, OrderedDict[str, deque[float]]] = {}

    def hit_all(self, items: Sequence[tuple[RateLimitItem, Budget]], cost: int) -> _Outcome:
        """Charges `cost` units of every budget, or none when one has fewer left."""
        now = time.time()
        windows = [(item, *self._hits(item, budget, now)) for item, budget in items]
        for item, _, hits in windows:
            if len(hits) + cost > item.amount:
                return _Outcome(item, _memory_state(item, hits, now), allowed=False)
        for item, key, hits in windows:
            hits.extend(repeat(now, cost))
            budgets = self._periods[item.get_expiry()]
            budgets[key] = hits  # a budget with no hit yet was not kept
            budgets.move_to_end(key)
        item, _, hits = min(windows, key=lambda window: window[0].amount - len(window[2]))
        return _Outcome(item, _memory_state(item, hits, now), allowed=True)

    def test(self, item: RateLimitItem, budget: Budget) -> _Outcome:
        """Whether one unit is left, charging nothing."""
        now = time.time()
        _, hits = self._hits(item, budget, now)
        return _Outcome(item, _memory_state(item, hits, now), allowed=len(hits) < item.amount)

    def __len__(self) -> int:
        return sum(len(budgets) for budgets in self._periods.values())

    def _hits(self, item: RateLimitItem, budget: Budget, now: float) -> tuple[str, deque[float]]:
        """The budget's key, and its hits still in its window (a new deque, not kept, for a
        budget with none)."""
        expiry = item.get_expiry()
        budgets = self._periods.setdefault(expiry, OrderedDict())
        # Forget the budgets hit least recently while their last hit is out of the window, a
        # few at a time: 100,000 at once held the loop for ~40 ms.
        for _ in range(FORGET_AT_A_LOOK):
            if not budgets:
                break
            hits = next(iter(budgets.values()))
            if hits and hits[-1] >= now - expiry:
                break
            budgets.popitem(last=False)
        key = item.key_for(budget.scope, budget.key)
        hits = budgets.get(key) or deque()
        while hits and hits[0] < now - expiry:
            hits.popleft()
        return key, hits


def _memory_state(item: RateLimitItem, hits: deque[float], now: float) -> RateLimitState:
    reset_at = (hits[0] if hits else now) + item.get_expiry()
    return RateLimitState(item.amount, max(0, item.amount - len(hits)), reset_at)


class RateLimiter:
    """A moving-window limiter on memory ("memory://") or Redis ("redis://host:port/db").

    On Redis the keys read `<key_prefix>:LIMITER/<scope>/<key>/<amount>/1/minute` and expire
    with their window; processes with the same URL and prefix share every budget.
    """

    def __init__(self, storage_uri: str, *, key_prefix: str = "tandem") -> None:
        # The memory limiter is the storage for "memory://" and the fallback while Redis is
        # down (see the module docstring).
        self._memory = _MemoryWindows()
        self._redis: MovingWindowRateLimiter | None = None
        self._pool: coredis.ConnectionPool | None = None
        self._hit_all_script: Script[str] | None = None
        self._hit_together: Batcher[_RedisHit, Any] | None = None
        self._key_prefix = key_prefix
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
            client = coredis.Redis(connection_pool=self._pool, decode_responses=True)
            self._hit_all_script = client.register_script(HIT_ALL_SCRIPT)
            self._hit_together = Batcher(self._hit_batch_on_redis)
        elif not storage_uri.startswith("memory://"):
            raise ValueError(
                f"Unsupported rate-limit storage {storage_uri.split('://')[0]!r}: "
                "use memory:// or redis://host:port/db"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimiter":
        return cls(settings.redis_url or "memory://")

    async def hit(self, limit: str, scope: str, key: str, *, cost: int = 1) -> RateLimitState:
        """Consumes `cost` units of `limit` for (scope, key); raises RateLimited when fewer
        are left (and then consumes nothing)."""
        return await self.hit_all([Budget(limit, scope, key)], cost=cost)

    async def hit_all(self, budgets: Sequence[Budget], *, cost: int = 1) -> RateLimitState:
        """Consumes `cost` units of every budget, or of none: raises RateLimited for the first
        budget with fewer than `cost` left. Returns the state of the budget with least left,
        whose headers the response carries."""
        items = [(parse(budget.limit), budget) for budget in budgets]
        outcome = await self._with_storage(
            lambda: self._hit_all_on_redis(items, cost), lambda: self._memory.hit_all(items, cost)
        )
        if not outcome.allowed:
            raise _refusal(outcome.item, outcome.state)
        return outcome.state

    async def _hit_all_on_redis(
        self, items: Sequence[tuple[RateLimitItem, Budget]], cost: int
    ) -> _Outcome:
        assert self._hit_together is not None
        keys = tuple(f"{self._key_prefix}:{item.key_for(b.scope, b.key)}" for item, b in items)
        limits = [cost]
        for item, _ in items:
            limits += [item.amount, item.get_expiry()]
        reply = await self._hit_together((keys, tuple(limits)))
        refused_by, *windows = cast(list[Any], reply)
        if refused_by:
            item, _ = items[int(refused_by) - 1]
            return _Outcome(item, _window_state(item, *windows), allowed=False)
        states = [
            (item, _window_state(item, *windows[2 * i : 2 * i + 2]))
            for i, (item, _) in enumerate(items)
        ]
        item, state = min(states, key=lambda pair: pair[1].remaining)
        return _Outcome(item, state, allowed=True)

    async def _hit_batch_on_redis(self, hits: Sequence[_RedisHit]) -> list[Any]:
        assert self._hit_all_script is not None
        keys = tuple(key for request_keys, _ in hits for key in request_keys)
        args: list[str | int] = [repr(time.time())]
        for request_keys, limits in hits:
            args += [len(request_keys), *limits]
        try:
            return cast(list[Any], await self._hit_all_script(keys=keys, args=tuple(args)))
        except coredis.exceptions.RedisError as exc:
            raise StorageError(exc) from exc  # as limits' own calls report it

    async def check(self, budget: Budget) -> RateLimitState:
        """Raises RateLimited when `budget` has nothing left, consuming nothing either way:
        for budgets that count failures, recorded with `record` once they happened."""
        item = parse(budget.limit)

        async def test_on_redis() -> _Outcome:
            assert self._redis is not None
            allowed = await self._redis.test(item, budget.scope, budget.key)
            return _Outcome(item, await _state(self._redis, item, budget), allowed=allowed)

        outcome = await self._with_storage(test_on_redis, lambda: self._memory.test(item, budget))
        if not outcome.allowed:
            raise _refusal(item, outcome.state)
        return outcome.state

    async def record(self, budget: Budget) -> None:
        """Consumes one unit of `budget` if one is left, never raising: counts a failure."""
        item = parse(budget.limit)

        async def hit_on_redis() -> object:
            assert self._redis is not None
            return await self._redis.hit(item, budget.scope, budget.key)

        await self._with_storage(hit_on_redis, lambda: self._memory.hit_all([(item, budget)], 1))

    async def _with_storage(
        self, on_redis: Callable[[], Awaitable[T]], in_memory: Callable[[], T]
    ) -> T:
        """`on_redis()`, or `in_memory()` without Redis or while it is failing (module
        docstring)."""
        if self._redis is not None and time.monotonic() >= self._redis_retry_at:
            try:
                # Our own deadline: the client enforces its timeouts only seconds late.
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    return await on_redis()
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
        return in_memory()

    @property
    def budgets_in_memory(self) -> int:
        """How many budgets this process holds in memory: one per key (a user, an address)
        hit within its period; one whose last hit has left it is forgotten at the next look at
        a budget of the same period."""
        return len(self._memory)

    async def ping(self) -> None:
        """Readiness: raises the Redis client's error when Redis does not answer."""
        if self._pool is not None:
            # Not limits' storage.check(): it swallows the error that says what is wrong.
            await coredis.Redis(connection_pool=self._pool).ping()

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()


def client_address(request: Request) -> str:
    """The peer's address. Behind a proxy it comes from X-Forwarded-For, and only when the
    peer is one of TANDEM_FORWARDED_ALLOW_IPS (`app.create_app`): trusting that header from
    anyone would let any client pick its key."""
    return request.client.host if request.client else "unknown"


def report(request: Request, state: RateLimitState) -> None:
    """The response to `request`, an error's too, carries `state`'s X-RateLimit-* headers."""
    carry_headers(request, state.headers())


class Per(StrEnum):
    """Whose budget a principal's request draws on."""

    user = "user"  # an API key's requests count against the user who created it
    organization = "organization"


@dataclass(frozen=True)
class PrincipalLimit:
    """A budget per user or organization, its limit a setting."""

    scope: str
    limit_of: Callable[[Settings], str]
    per: Per = Per.user

    def budget(self, settings: Settings, principal: Principal) -> Budget:
        owner = principal.user_id if self.per is Per.user else principal.organization_id
        return Budget(self.limit_of(settings), self.scope, f"{self.per.value}:{owner}")


async def charge(
    request: Request, principal: Principal, *limits: PrincipalLimit, cost: int = 1
) -> None:
    """Consumes `cost` units of each of `limits` for `principal`, or raises 429; the
    X-RateLimit-* headers are those of the budget with least left."""
    limiter: RateLimiter = request.app.state.rate_limiter
    settings: Settings = request.app.state.settings
    budgets = [limit.budget(settings, principal) for limit in limits]
    report(request, await limiter.hit_all(budgets, cost=cost))


def limit_principal(*limits: PrincipalLimit) -> Callable[..., Awaitable[None]]:
    """A dependency charging one unit of each of `limits` to the calling principal."""

    async def dependency(request: Request, principal: CurrentPrincipal) -> None:
        await charge(request, principal, *limits)

    return dependency


def rate_limit(*budgets: Callable[[Request, Settings], Budget]) -> Callable[..., Awaitable[None]]:
    """A dependency taking one unit of each budget (`budget(request, settings)`), or none."""

    async def dependency(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        settings: Settings = request.app.state.settings
        report(request, await limiter.hit_all([budget(request, settings) for budget in budgets]))

    return dependency
