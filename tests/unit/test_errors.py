"""The one mapping from domain errors to HTTP, and the one error shape."""

import logging

import httpx
import pytest
from fastapi import FastAPI

from tandem.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    TandemError,
    Unauthorized,
    install_error_handlers,
)
from tandem.observability import HttpMetrics, RequestContextMiddleware

pytestmark = pytest.mark.anyio


def app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics())

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


async def get(app: FastAPI, path: str = "/boom", **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(Unauthorized("No token"), 401, id="unauthorized"),
        pytest.param(Forbidden("Missing scope 'agent:run'"), 403, id="forbidden"),
        pytest.param(NotFound("Agent 'x' not found"), 404, id="not-found"),
        pytest.param(Conflict("Email already registered"), 409, id="conflict"),
        pytest.param(RateLimited("Retry in 3 seconds"), 429, id="rate-limited"),
        pytest.param(ServiceUnavailable("Down"), 503, id="unavailable"),
    ],
)
async def test_domain_error_becomes_its_status_and_detail(error: TandemError, status: int) -> None:
    response = await get(app_raising(error))
    assert response.status_code == status
    assert response.json() == {"detail": error.detail}
    assert response.headers["x-request-id"]


async def test_invalid_uses_the_validation_error_shape() -> None:
    error = Invalid("Edit needs feedback", loc=("body", "feedback"))
    response = await get(app_raising(error))
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": [
            {"loc": ["body", "feedback"], "msg": "Edit needs feedback", "type": "value_error"}
        ]
    }


async def test_error_headers_are_sent() -> None:
    error = Unauthorized("Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    response = await get(app_raising(error))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


async def test_error_without_detail_uses_its_default() -> None:
    response = await get(app_raising(NotFound()))
    assert response.json() == {"detail": "Not found"}


async def test_unhandled_error_is_a_500_that_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "password=hunter2 at /srv/internal/path.py"
    with caplog.at_level(logging.ERROR, logger="tandem.http"):
        response = await get(app_raising(RuntimeError(secret)), headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500, response.text
    assert response.json() == {"detail": "Internal server error", "request_id": "req-42"}
    assert secret not in response.text
    assert response.headers["x-request-id"] == "req-42"
    logged = [r for r in caplog.records if r.exc_info]
    assert logged, "the 500 must be logged with its traceback"
    assert secret in str(logged[0].exc_info[1])  # type: ignore[index]
