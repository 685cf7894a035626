"""Liveness, readiness and metrics: no authentication, never rate limited."""

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from tandem import __version__
from tandem.db import READ_ONLY
from tandem.errors import DATABASE_RETRY_AFTER_SECONDS, Unauthorized, error_responses
from tandem.identity.security import BEARER_CHALLENGE
from tandem.routing import Router
from tandem.settings import Settings

ReadinessCheck = Callable[[], Awaitable[None]]
READINESS_TIMEOUT_SECONDS = 3.0

router = Router(tags=["health"])
log = logging.getLogger(__name__)


def database_check(engine: AsyncEngine) -> ReadinessCheck:
    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execution_options(**READ_ONLY)
            await connection.execute(text("SELECT 1"))

    return check


async def _run_check(name: str, check: ReadinessCheck) -> str:
    try:
        await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("Readiness check %s timed out", name)
        return "timeout"
    except Exception as exc:
        log.warning("Readiness check %s failed: %r", name, exc)
        return f"failed: {type(exc).__name__}"
    return "ok"


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy", "version": __version__}


@router.get("/health/ready", responses={503: {"description": "A dependency is not ready"}})
async def ready(request: Request) -> JSONResponse:
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    results = dict(
        zip(
            checks,
            await asyncio.gather(*(_run_check(n, c) for n, c in checks.items())),
            strict=True,
        )
    )
    failing = [name for name, result in results.items() if result != "ok"]
    body: dict[str, Any] = {"status": "ready" if not failing else "not ready", "checks": results}
    if failing:
        body["detail"] = f"Not ready: {', '.join(failing)} check failed"
        return JSONResponse(
            body, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
        )
    return JSONResponse(body)


METRICS_TOKEN_NEEDED = "Metrics need `Authorization: Bearer <TANDEM_METRICS_TOKEN>`"


def _check_metrics_access(request: Request) -> None:
    """Metrics count every tenant's traffic: with TANDEM_METRICS_TOKEN set, only its bearer
    reads them; without it, development serves them to anyone and production not at all."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token:
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {settings.metrics_token}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorized(METRICS_TOKEN_NEEDED, headers=BEARER_CHALLENGE)
    elif settings.is_production:
        raise StarletteHTTPException(status_code=404)


@router.get("/metrics", response_class=Response, responses=error_responses(401))
async def metrics(request: Request) -> Response:
    _check_metrics_access(request)
    for refresh in getattr(request.app.state, "metrics_refreshers", []):
        try:
            await refresh()
        except Exception:  # a metric that cannot be counted now must not hide the others
            log.exception("Refreshing a metric failed")
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
