"""No timing oracle: a login for an unknown e-mail costs about as long as a wrong password.

Run: pytest tests/benchmark -m performance --benchmark-only --no-cov
"""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.app import create_app
from tandem.db import create_engine
from tandem.migrations import upgrade_to_head
from tandem.settings import Settings

PASSWORD = "a long enough password"
ATTEMPTS_PER_ROUND = 5


async def _login_attempts(settings: Settings, email: str) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(ATTEMPTS_PER_ROUND):
                response = await client.post(
                    "/api/v1/auth/login", json={"email": email, "password": "wrong password!"}
                )
                assert response.status_code == 401, response.text


@pytest.fixture(scope="module")
def bench_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    directory: Path = tmp_path_factory.mktemp("login-bench")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{directory}/bench.db",
        data_dir=directory,
        rate_limit_login="100000/minute",
        rate_limit_login_address="100000/minute",
    )

    async def prepare() -> None:
        engine = create_engine(settings.database_url)
        await upgrade_to_head(engine)
        await engine.dispose()
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                body = {"email": "known@example.com", "password": PASSWORD, "full_name": "K"}
                assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201

    asyncio.run(prepare())
    return settings


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("known@example.com", id="wrong-password"),
        pytest.param("nobody@example.com", id="unknown-email"),
    ],
)
def test_failed_login_latency(benchmark: Any, bench_settings: Settings, email: str) -> None:
    benchmark.pedantic(
        lambda: asyncio.run(_login_attempts(bench_settings, email)), rounds=5, iterations=1
    )
    benchmark.extra_info["median_ms_per_login"] = round(
        benchmark.stats.stats.median / ATTEMPTS_PER_ROUND * 1000, 1
    )


RESETS_PER_ROUND = 20


async def _reset_requests(settings: Settings, email: str) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(RESETS_PER_ROUND):
                response = await client.post("/api/v1/auth/password-reset", json={"email": email})
                assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("known@example.com", id="known-address"),
        pytest.param("nobody@example.com", id="unknown-address"),
    ],
)
def test_password_reset_request_latency(
    benchmark: Any, bench_settings: Settings, email: str
) -> None:
    """Issue 13, finding 3: asking for a reset answers alike, and about as fast, whether or
    not the address has an account."""
    benchmark.pedantic(
        lambda: asyncio.run(_reset_requests(bench_settings, email)), rounds=5, iterations=1
    )
    benchmark.extra_info["median_ms_per_request"] = round(
        benchmark.stats.stats.median / RESETS_PER_ROUND * 1000, 2
    )
