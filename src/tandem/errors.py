"""Domain errors and their one mapping to HTTP.

Services raise these; they know nothing of HTTP beyond the status code each error carries.
One handler turns any of them into `{"detail": "..."}`; a database that cannot be reached
(connection refused or lost, pool exhausted) is a 503 with `Retry-After`, not a 500.
"""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly"
DATABASE_RETRY_AFTER_SECONDS = 5


class TandemError(Exception):
    status_code: ClassVar[int] = 400
    default_detail: ClassVar[str] = "Bad request"
    # An error that must still record what it found (e.g. revoking a stolen token family)
    # sets this, and the request's transaction commits before the error is returned.
    keeps_changes: ClassVar[bool] = False

    def __init__(
        self, detail: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class Unauthorized(TandemError):
    status_code = 401
    default_detail = "Not authenticated"


class Forbidden(TandemError):
    status_code = 403
    default_detail = "Forbidden"


class NotFound(TandemError):
    status_code = 404
    default_detail = "Not found"


class Conflict(TandemError):
    status_code = 409
    default_detail = "Conflict"


class Invalid(TandemError):
    """A 422 found by domain logic, in FastAPI's validation shape so clients parse one form."""

    status_code = 422
    default_detail = "Invalid request"

    def __init__(self, detail: str | None = None, *, loc: Sequence[str | int] = ("body",)) -> None:
        super().__init__(detail)
        self.loc = list(loc)

    def body(self) -> dict[str, Any]:
        return {"detail": [{"loc": self.loc, "msg": self.detail, "type": "value_error"}]}


class RateLimited(TandemError):
    status_code = 429
    default_detail = "Too many requests"


class ServiceUnavailable(TandemError):
    status_code = 503
    default_detail = "Service unavailable"


def database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or the connection was lost: worth trying again."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


class ErrorOut(BaseModel):
    detail: str


_DESCRIPTIONS = {
    401: "Missing, invalid or expired credentials",
    403: "Authenticated, but without the scope this needs",
    404: "No such object in your organization",
    409: "Conflicts with the current state",
    429: "Rate limit exceeded; see Retry-After",
    503: "A dependency is not available",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the domain errors a route can answer with."""
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}


async def _handle_tandem_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TandemError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _handle_database_error(request: Request, exc: Exception) -> Response:
    if not database_unavailable(exc):
        raise exc
    return JSONResponse(
        {"detail": DATABASE_UNAVAILABLE},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 shape, without echoing the rejected input (it may be a password)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    """A body that is not even text is a JSON error like any other: 422, not FastAPI's 400."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        error = {"loc": ["body"], "msg": "Body is not UTF-8 encoded JSON", "type": "json_invalid"}
        return JSONResponse({"detail": [error]}, status_code=422)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TandemError, _handle_tandem_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(sa_exc.DBAPIError, _handle_database_error)
    app.add_exception_handler(sa_exc.TimeoutError, _handle_database_error)
