"""The limiter against a real Redis and over HTTP: shared budgets, 429s, readiness, outages.

Every test uses keys of its own (a uuid key prefix or scope), so tests never share a budget,
also under `pytest -n 2`.
"""

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import coredis
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream
from fastapi import Depends, FastAPI, Request

from tandem.app import create_app
from tandem.db import create_engine
from tandem.errors import RateLimited
from tandem.migrations import upgrade_to_head
from tandem.ratelimit import (
    REDIS_TIMEOUT_SECONDS,
    Budget,
    RateLimiter,
    client_address,
    rate_limit,
)
from tandem.settings import Settings
from tests.conftest import running

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]


@pytest.fixture(scope="module")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated SQLite file for the module: these tests need an app, not a database of
    their own (and not both backends), but the app's background work expects the schema."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ratelimit') / 'tandem.db'}"
    engine = create_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()
    return url


def limited_app(
    database_url: str,
    storage_url: str | None,
    *,
    scope: str,
    limit: str,
    key_of: Callable[[Request], str] = client_address,
) -> FastAPI:
    """The real app with one extra route behind the `rate_limit` dependency."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        redis_url=storage_url,
    )
    app = create_app(settings)

    @app.get(
        "/limited",
        dependencies=[Depends(rate_limit(lambda r, _: Budget(limit, scope, key_of(r))))],
    )
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    return app


def retry_detail(limit: str, retry: int) -> str:
    """The detail API.md asks for: which limit, and when to retry."""
    return f"Rate limit exceeded ({limit}). Retry in {retry} second{'' if retry == 1 else 's'}."


def unique_scope() -> str:
    return f"test-{uuid.uuid4().hex}"


def assert_ok_with_remaining(response: httpx.Response, remaining: int, limit: int) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())


# --- the limiter itself on Redis ------------------------------------------------------------


async def test_two_limiters_on_one_redis_share_one_budget(
    redis_url: str,
    redis_key_prefix: str,
) -> None:
    first = RateLimiter(redis_url, key_prefix=redis_key_prefix)
    second = RateLimiter(redis_url, key_prefix=redis_key_prefix)
    try:
        assert (await first.hit("3/minute", "login", "1.2.3.4")).remaining == 2
        assert (await second.hit("3/minute", "login", "1.2.3.4")).remaining == 1
        assert (await first.hit("3/minute", "login", "1.2.3.4")).remaining == 0
        with pytest.raises(RateLimited) as raised:
            await second.hit("3/minute", "login", "1.2.3.4")
    finally:
        await first.close()
        await second.close()

    retry = int(raised.value.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert raised.value.detail == retry_detail("3 per 1 minute", retry)
    assert raised.value.headers["X-RateLimit-Remaining"] == "0"


async def test_different_key_prefixes_on_one_redis_do_not_share(
    redis_url: str,
    redis_key_prefix: str,
) -> None:
    first = RateLimiter(redis_url, key_prefix=redis_key_prefix)
    second = RateLimiter(redis_url, key_prefix=f"{redis_key_prefix}-other")
    try:
        await first.hit("1/minute", "login", "a")
        assert (await second.hit("1/minute", "login", "a")).remaining == 0
    finally:
        await first.close()
        await second.close()


async def test_the_redis_window_gives_the_budget_back_when_it_has_passed(
    redis_url: str,
    redis_key_prefix: str,
    wait_until: WaitUntil,
) -> None:
    limiter = RateLimiter(redis_url, key_prefix=redis_key_prefix)

    async def allowed() -> bool:
        try:
            await limiter.hit("1 per 2 seconds", "agents", "user-1")
        except RateLimited:
            return False
        return True

    try:
        assert await allowed()
        assert not await allowed()
        assert await wait_until(allowed, timeout=10)
    finally:
        await limiter.close()


async def test_redis_readiness_ping_answers(
    redis_url: str,
    redis_key_prefix: str,
) -> None:
    limiter = RateLimiter(redis_url, key_prefix=redis_key_prefix)
    try:
        await limiter.ping()  # raises if Redis does not answer
    finally:
        await limiter.close()


async def test_redis_down_fails_open_to_per_process_limits_with_one_warning(
    free_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(f"redis://127.0.0.1:{free_tcp_port}/0")
    caplog.set_level(logging.WARNING, logger="tandem.ratelimit")
    try:
        assert (await limiter.hit("2/minute", "login", "a")).remaining == 1
        assert (await limiter.hit("2/minute", "login", "a")).remaining == 0
        with pytest.raises(RateLimited) as raised:  # still limited, per process
            await limiter.hit("2/minute", "login", "a")
        with pytest.raises(coredis.exceptions.ConnectionError):
            await limiter.ping()
    finally:
        await limiter.close()

    assert raised.value.headers["X-RateLimit-Limit"] == "2"
    warnings = [r for r in caplog.records if r.name == "tandem.ratelimit"]
    assert len(warnings) == 1  # the retry interval keeps an outage from flooding the log
    assert warnings[0].levelno == logging.WARNING
    assert "using per-process memory limits" in warnings[0].getMessage()


@asynccontextmanager
async def hung_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a hung Redis."""

    async def never_answer(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, never_answer)
        yield listener.extra(SocketAttribute.local_port)
        tasks.cancel_scope.cancel()


async def test_a_hung_redis_fails_open_after_the_redis_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tandem.ratelimit")
    async with hung_server() as port:
        limiter = RateLimiter(f"redis://127.0.0.1:{port}/0")
        try:
            # The client alone would take several seconds to give up; the limiter must not.
            with anyio.fail_after(REDIS_TIMEOUT_SECONDS * 3):
                state = await limiter.hit("2/minute", "login", "a")
        finally:
            await limiter.close()

    assert (state.limit, state.remaining) == (2, 1)
    [warning] = [r for r in caplog.records if r.name == "tandem.ratelimit"]
    assert f"no answer within {REDIS_TIMEOUT_SECONDS:g} s" in warning.getMessage()


# --- over HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "storage", [pytest.param("memory", id="memory"), pytest.param("redis", id="redis")]
)
async def test_over_the_limit_is_429_with_retry_after_and_the_ratelimit_headers(
    request: pytest.FixtureRequest, sqlite_url: str, storage: str
) -> None:
    url = request.getfixturevalue("redis_url") if storage == "redis" else None
    app = limited_app(sqlite_url, url, scope=unique_scope(), limit="2/minute")
    async with running(app) as client:
        assert_ok_with_remaining(await client.get("/limited"), remaining=1, limit=2)
        assert_ok_with_remaining(await client.get("/limited"), remaining=0, limit=2)
        response = await client.get("/limited")

    assert response.status_code == 429, response.text
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert response.json() == {"detail": retry_detail("2 per 1 minute", retry)}
    assert response.headers["X-RateLimit-Limit"] == "2"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 0 <= int(response.headers["X-RateLimit-Reset"]) - time.time() <= 61


async def test_two_apps_on_one_redis_share_one_budget(
    sqlite_url: str,
    redis_url: str,
) -> None:
    def api_key(request: Request) -> str:
        return request.headers["X-Api-Key"]

    scope = unique_scope()
    first = limited_app(sqlite_url, redis_url, scope=scope, limit="3/minute", key_of=api_key)
    second = limited_app(sqlite_url, redis_url, scope=scope, limit="3/minute", key_of=api_key)
    key = {"X-Api-Key": "key-1"}
    async with running(first) as one, running(second) as two:
        assert_ok_with_remaining(await one.get("/limited", headers=key), remaining=2, limit=3)
        assert_ok_with_remaining(await two.get("/limited", headers=key), remaining=1, limit=3)
        assert_ok_with_remaining(await one.get("/limited", headers=key), remaining=0, limit=3)
        refused = await two.get("/limited", headers=key)
        other_key = await two.get("/limited", headers={"X-Api-Key": "key-2"})

    assert refused.status_code == 429, refused.text
    assert refused.json()["detail"].startswith("Rate limit exceeded (3 per 1 minute). Retry in")
    assert_ok_with_remaining(other_key, remaining=2, limit=3)


async def test_two_apps_in_memory_do_not_share_a_budget(sqlite_url: str) -> None:
    scope = unique_scope()
    first = limited_app(sqlite_url, None, scope=scope, limit="1/minute")
    second = limited_app(sqlite_url, None, scope=scope, limit="1/minute")
    async with running(first) as one, running(second) as two:
        assert_ok_with_remaining(await one.get("/limited"), remaining=0, limit=1)
        assert (await one.get("/limited")).status_code == 429
        assert_ok_with_remaining(await two.get("/limited"), remaining=0, limit=1)


# --- readiness ------------------------------------------------------------------------------


async def test_ready_checks_redis_when_it_is_configured(
    sqlite_url: str,
    redis_url: str,
) -> None:
    async with running(limited_app(sqlite_url, redis_url, scope="-", limit="1/minute")) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_ready_is_503_naming_redis_when_it_is_unreachable(
    sqlite_url: str, free_tcp_port: int
) -> None:
    url = f"redis://127.0.0.1:{free_tcp_port}/0"
    async with running(limited_app(sqlite_url, url, scope="-", limit="1/minute")) as client:
        response = await client.get("/health/ready")
    body = response.json()
    assert response.status_code == 503, response.text
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "failed: ConnectionError"
    assert body["detail"] == "Not ready: redis check failed"


async def test_ready_has_no_redis_check_on_memory_storage(sqlite_url: str) -> None:
    async with running(limited_app(sqlite_url, None, scope="-", limit="1/minute")) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_several_budgets_and_costs_on_redis(redis_url: str, redis_key_prefix: str) -> None:
    """hit_all, costs, check and record take the Redis path too, shared by two limiters."""
    first = RateLimiter(redis_url, key_prefix=redis_key_prefix)
    second = RateLimiter(redis_url, key_prefix=redis_key_prefix)
    user, organization = Budget("60/hour", "content", "u"), Budget("100/hour", "content", "o")
    failures = Budget("1/hour", "login-failures", "ann@example.com")
    try:
        assert (await first.hit_all([user, organization], cost=50)).remaining == 10
        with pytest.raises(RateLimited) as raised:
            await second.hit_all([organization, user], cost=11)
        state = await second.hit_all([organization], cost=1)  # untouched by the refusal
        await first.check(failures)
        await first.record(failures)
        with pytest.raises(RateLimited):
            await second.check(failures)
    finally:
        await first.close()
        await second.close()

    assert raised.value.headers["X-RateLimit-Limit"] == "60"
    assert raised.value.headers["X-RateLimit-Remaining"] == "10"
    assert (state.limit, state.remaining) == (100, 49)


async def test_hit_all_on_redis_takes_from_every_budget_or_none_under_concurrency(
    redis_url: str, redis_key_prefix: str
) -> None:
    """Fifty requests at once, from two processes' limiters, drawing on a small budget and a
    large one: the large one is charged exactly for the requests let through, never for one
    the small budget refused (a test-then-hit in several round trips charged all fifty)."""
    limiters = [RateLimiter(redis_url, key_prefix=redis_key_prefix) for _ in range(2)]
    small, large = Budget("5/hour", "agents", "user:u"), Budget("1000/hour", "agents", "org:o")
    allowed: list[int] = []

    async def request(limiter: RateLimiter) -> None:
        try:
            await limiter.hit_all([large, small])
        except RateLimited:
            return
        allowed.append(1)

    try:
        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(request, limiters[n % 2])
        left = await limiters[0].hit_all([large])
    finally:
        for limiter in limiters:
            await limiter.close()
    assert len(allowed) == 5
    assert left.remaining == 1000 - 5 - 1


async def test_requests_made_together_share_a_script_call_and_are_charged_each_alone(
    redis_url: str, redis_key_prefix: str
) -> None:
    """Fifty requests at once through one limiter: a few script calls carry them all (the
    first request's, then one for those made while it was under way), and each is charged
    or refused as if it had come alone: exactly the budget's five pass, every other budget
    they name is charged for those five only, and a refused request's answer names the
    budget that refused it."""
    limiter = RateLimiter(redis_url, key_prefix=redis_key_prefix)
    assert limiter._hit_all_script is not None
    script, calls = limiter._hit_all_script, []

    async def counted(**arguments: Any) -> Any:
        calls.append(arguments)
        return await script(**arguments)

    limiter._hit_all_script = counted  # type: ignore[assignment]
    small = Budget("5/hour", "agents", "user:u")
    refusals: list[RateLimited] = []
    states = []

    async def request(n: int) -> None:
        budgets = [Budget("1000/hour", "agents", f"org:{n % 2}"), small]
        try:
            states.append(await limiter.hit_all(budgets))
        except RateLimited as refused:
            refusals.append(refused)

    try:
        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(request, n)
        burst_calls = len(calls)
        even = await limiter.hit_all([Budget("1000/hour", "agents", "org:0")])
        odd = await limiter.hit_all([Budget("1000/hour", "agents", "org:1")])
    finally:
        await limiter.close()

    assert burst_calls == 2
    assert len(states) == 5
    assert sorted(state.remaining for state in states) == [0, 1, 2, 3, 4]
    assert len(refusals) == 45
    assert {refused.headers["X-RateLimit-Limit"] for refused in refusals} == {"5"}
    assert 1000 - even.remaining - 1 + 1000 - odd.remaining - 1 == 5
