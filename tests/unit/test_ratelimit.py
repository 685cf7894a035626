"""The limiter on its memory storage: budgets, the moving window, the 429 it raises.

Time is frozen with freezegun: the memory windows read `time.time()`, which freezegun
controls; `real_asyncio=True` leaves the event loop's own clock alone.
"""

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from unittest import mock

import freezegun
import pytest
from freezegun.api import FrozenDateTimeFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from tandem.errors import RateLimited
from tandem.ratelimit import (
    FORGET_AT_A_LOOK,
    Budget,
    RateLimiter,
    RateLimitState,
    client_address,
)
from tandem.settings import Settings

pytestmark = pytest.mark.anyio

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
EPOCH = int(NOW.timestamp())


@pytest.fixture
def clock() -> Iterator[FrozenDateTimeFactory]:
    with freezegun.freeze_time(NOW, real_asyncio=True) as frozen:
        assert isinstance(frozen, FrozenDateTimeFactory)  # neither ticking nor stepping
        yield frozen


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter("memory://")


async def exhaust(limiter: RateLimiter, limit: str, scope: str, key: str, hits: int) -> None:
    for _ in range(hits):
        await limiter.hit(limit, scope, key)


async def test_remaining_counts_down_to_zero(limiter: RateLimiter) -> None:
    states = [await limiter.hit("5/minute", "login", "1.2.3.4") for _ in range(5)]
    assert [s.remaining for s in states] == [4, 3, 2, 1, 0]
    assert {s.limit for s in states} == {5}


@pytest.mark.parametrize(
    ("waited", "retry"),
    [
        pytest.param(0, 60, id="at-once-the-whole-window"),
        pytest.param(45, 15, id="later-the-rest-of-the-window"),
        pytest.param(59.5, 1, id="rounded-up-never-zero"),
    ],
)
async def test_the_hit_over_the_limit_raises_429_saying_when_to_retry(
    limiter: RateLimiter, clock: FrozenDateTimeFactory, waited: float, retry: int
) -> None:
    await exhaust(limiter, "5/minute", "login", "1.2.3.4", 5)
    clock.tick(waited)

    with pytest.raises(RateLimited) as raised:
        await limiter.hit("5/minute", "login", "1.2.3.4")

    unit = "second" if retry == 1 else "seconds"
    assert raised.value.status_code == 429
    assert raised.value.body() == {
        "detail": f"Rate limit exceeded (5 per 1 minute). Retry in {retry} {unit}."
    }
    assert raised.value.headers == {
        "Retry-After": str(retry),
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(EPOCH + 60),
    }


async def test_a_refused_hit_does_not_use_up_budget(
    limiter: RateLimiter, clock: FrozenDateTimeFactory
) -> None:
    await exhaust(limiter, "2/minute", "login", "a", 2)
    clock.tick(30)
    for _ in range(3):
        with pytest.raises(RateLimited):
            await limiter.hit("2/minute", "login", "a")
    clock.tick(31)  # past the window of the two hits at 0 s; the refused ones at 30 s never counted
    assert (await limiter.hit("2/minute", "login", "a")).remaining == 1


async def test_budget_comes_back_as_each_hit_leaves_the_moving_window(
    limiter: RateLimiter, clock: FrozenDateTimeFactory
) -> None:
    for _ in range(3):  # hits at 0 s, 10 s, 20 s
        await limiter.hit("3/minute", "agents", "user-1")
        clock.tick(10)

    clock.move_to(datetime.fromtimestamp(EPOCH + 55, UTC))
    with pytest.raises(RateLimited) as raised:
        await limiter.hit("3/minute", "agents", "user-1")
    assert raised.value.headers["Retry-After"] == "5"

    clock.move_to(datetime.fromtimestamp(EPOCH + 61, UTC))  # the 0 s hit has left
    state = await limiter.hit("3/minute", "agents", "user-1")
    assert state == RateLimitState(limit=3, remaining=0, reset_at=EPOCH + 70)


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        pytest.param("login", "5.6.7.8", id="another-key"),
        pytest.param("register", "1.2.3.4", id="another-scope"),
    ],
)
async def test_keys_and_scopes_have_budgets_of_their_own(
    limiter: RateLimiter, scope: str, key: str
) -> None:
    await exhaust(limiter, "1/minute", "login", "1.2.3.4", 1)
    with pytest.raises(RateLimited):
        await limiter.hit("1/minute", "login", "1.2.3.4")

    state = await limiter.hit("1/minute", scope, key)
    assert (state.limit, state.remaining) == (1, 0)


async def test_two_memory_limiters_do_not_share_a_budget() -> None:
    first, second = RateLimiter("memory://"), RateLimiter("memory://")
    await exhaust(first, "1/minute", "login", "a", 1)
    assert (await second.hit("1/minute", "login", "a")).remaining == 0


def test_state_headers_are_the_three_x_ratelimit_headers_with_reset_in_epoch_seconds() -> None:
    state = RateLimitState(limit=60, remaining=59, reset_at=1_900_000_000.2)
    assert state.headers() == {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "59",
        "X-RateLimit-Reset": "1900000001",
    }


@pytest.mark.parametrize(
    ("reset_in", "retry"),
    [
        pytest.param(30.5, 31, id="rounded-up"),
        pytest.param(0.2, 1, id="under-a-second-is-one"),
        pytest.param(-5, 1, id="already-past-is-one"),
    ],
)
def test_retry_after_is_whole_seconds_at_least_one(
    clock: FrozenDateTimeFactory, reset_in: float, retry: int
) -> None:
    assert RateLimitState(limit=1, remaining=0, reset_at=EPOCH + reset_in).retry_after() == retry


@pytest.mark.parametrize(
    ("client", "address"),
    [
        pytest.param(("203.0.113.7", 51000), "203.0.113.7", id="peer-address"),
        pytest.param(None, "unknown", id="no-peer"),
    ],
)
def test_client_address_is_the_peer_host(client: tuple[str, int] | None, address: str) -> None:
    request = Request({"type": "http", "client": client, "headers": []})
    assert client_address(request) == address


async def test_from_settings_without_redis_limits_in_memory_and_is_always_ready() -> None:
    limiter = RateLimiter.from_settings(Settings(_env_file=None, redis_url=None))  # type: ignore[call-arg]
    assert (await limiter.hit("60/minute", "agents", "user-1")).remaining == 59
    await limiter.ping()
    await limiter.close()


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("memcached://127.0.0.1:11211", id="other-storage"),
        pytest.param("127.0.0.1:6379", id="no-scheme"),
    ],
)
def test_an_unsupported_storage_is_refused_naming_the_choices(uri: str) -> None:
    with pytest.raises(ValueError, match=r"use memory:// or redis://host:port/db"):
        RateLimiter(uri)


# --- several budgets at once, costs, failure counting -------------------------------------


async def test_a_hit_costing_several_units_takes_them_all_or_none(limiter: RateLimiter) -> None:
    assert (await limiter.hit("60/hour", "content", "user-1", cost=50)).remaining == 10
    with pytest.raises(RateLimited) as raised:
        await limiter.hit("60/hour", "content", "user-1", cost=11)
    assert raised.value.headers["X-RateLimit-Remaining"] == "10"
    assert (await limiter.hit("60/hour", "content", "user-1", cost=10)).remaining == 0


async def test_a_cost_over_the_whole_limit_is_always_refused(limiter: RateLimiter) -> None:
    with pytest.raises(RateLimited):
        await limiter.hit("10/hour", "content", "user-1", cost=11)
    assert (await limiter.hit("10/hour", "content", "user-1")).remaining == 9


async def test_hit_all_reports_the_budget_with_least_left(limiter: RateLimiter) -> None:
    user, organization = Budget("3/minute", "agents", "u"), Budget("4/minute", "agents", "o")
    states = [await limiter.hit_all([user, organization]) for _ in range(2)]
    assert [(s.limit, s.remaining) for s in states] == [(3, 2), (3, 1)]
    other_user = Budget("3/minute", "agents", "u2")
    states = [await limiter.hit_all([other_user, organization]) for _ in range(2)]
    assert [(s.limit, s.remaining) for s in states] == [(4, 1), (4, 0)]


async def test_hit_all_over_one_limit_uses_up_none_of_the_others(limiter: RateLimiter) -> None:
    small, large = Budget("1/minute", "agents", "u"), Budget("5/minute", "agents", "o")
    await limiter.hit_all([small])
    for _ in range(3):
        with pytest.raises(RateLimited) as raised:
            await limiter.hit_all([large, small])
        assert raised.value.headers["X-RateLimit-Limit"] == "1"
    assert (await limiter.hit_all([large])).remaining == 4


async def test_check_refuses_a_spent_budget_and_record_counts_without_raising(
    limiter: RateLimiter,
) -> None:
    failures = Budget("2/hour", "login-failures", "ann@example.com")
    assert (await limiter.check(failures)).remaining == 2  # checking consumes nothing
    for _ in range(3):  # the third is over the limit: recorded as nothing, not raised
        await limiter.record(failures)
    with pytest.raises(RateLimited) as raised:
        await limiter.check(failures)
    assert raised.value.headers["X-RateLimit-Remaining"] == "0"
    assert raised.value.detail.startswith("Rate limit exceeded (2 per 1 hour). Retry in")


async def test_a_budget_whose_last_hit_has_left_its_window_is_forgotten(
    limiter: RateLimiter, clock: FrozenDateTimeFactory
) -> None:
    await limiter.hit("5/minute", "login", "1.2.3.4")
    await limiter.hit("5/minute", "login", "5.6.7.8")
    await limiter.hit("5/hour", "register", "1.2.3.4")
    clock.tick(30)
    await limiter.hit("5/minute", "login", "5.6.7.8")  # hit again: the last to go
    assert limiter.budgets_in_memory == 3

    clock.tick(40)  # 1.2.3.4's login hit is 70 s old, 5.6.7.8's 40 s, the register's 70 s
    state = await limiter.hit("5/minute", "login", "9.9.9.9")
    assert (state.remaining, limiter.budgets_in_memory) == (4, 3)  # 1.2.3.4's login forgotten
    assert (await limiter.hit("5/minute", "login", "5.6.7.8")).remaining == 3  # its 30 s hit
    with pytest.raises(RateLimited):
        await exhaust(limiter, "5/hour", "register", "1.2.3.4", 5)  # its first hit still counts


async def test_many_idle_budgets_are_forgotten_a_few_at_each_look(
    limiter: RateLimiter, clock: FrozenDateTimeFactory
) -> None:
    for n in range(3 * FORGET_AT_A_LOOK):
        await limiter.hit("5/minute", "login-address", f"198.51.100.{n}")
    clock.tick(61)

    await limiter.hit("5/minute", "login-address", "203.0.113.1")
    assert limiter.budgets_in_memory == 2 * FORGET_AT_A_LOOK + 1  # no pause for all at once
    for n in range(2):
        await limiter.hit("5/minute", "login-address", f"203.0.113.{2 + n}")
    assert limiter.budgets_in_memory == 3


async def test_checking_a_budget_keeps_nothing(limiter: RateLimiter) -> None:
    for n in range(100):
        await limiter.check(Budget("5/minute", "login-failures", f"user{n}@example.com"))
    assert limiter.budgets_in_memory == 0


_MOVES = st.lists(
    st.tuples(
        # Seconds since the last move, never adding up to a whole period: at that very
        # instant `limits` itself disagrees (its hit counts a hit one period old, its window
        # stats do not; Tandem counts it, as its Redis script does).
        st.integers(min_value=0, max_value=40).map(lambda seconds: seconds + 1 / 1024),
        st.integers(min_value=1, max_value=4),  # the hit's cost
        st.sampled_from(["3/minute", "5/minute", "2/second"]),
    ),
    max_size=40,
)


@given(moves=_MOVES)
@settings(max_examples=150, deadline=None)
async def test_memory_windows_count_as_limits_moving_window_counts(
    moves: list[tuple[float, int, str]],
) -> None:
    """Tandem's memory windows and `limits`' own moving window (its memory storage), hit
    alike, allow and refuse alike and report the same remaining and reset."""
    ours = RateLimiter("memory://")
    theirs = MovingWindowRateLimiter(MemoryStorage())
    # Both read time.time(). Not freezegun: its start scans every loaded module, seconds in
    # a full test run, and this test starts a clock per example.
    with mock.patch("time.time", return_value=float(EPOCH)) as clock:
        for waited, cost, limit in moves:
            clock.return_value += waited
            item = parse(limit)
            try:
                headers = (await ours.hit(limit, "scope", "key", cost=cost)).headers()
                allowed = True
            except RateLimited as refused:
                headers, allowed = refused.headers, False
            assert theirs.hit(item, "scope", "key", cost=cost) is allowed
            stats = theirs.get_window_stats(item, "scope", "key")
            assert headers["X-RateLimit-Remaining"] == str(stats.remaining)
            if stats.remaining < item.amount:  # an empty window's reset: limits' is arbitrary
                assert headers["X-RateLimit-Reset"] == str(math.ceil(stats.reset_time))
