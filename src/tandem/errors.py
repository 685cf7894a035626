"""Domain errors and their one mapping to HTTP.

Services raise these; they know nothing of HTTP beyond the status code each error carries.
One handler turns any of them into `{"detail": "..."}`.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class TandemError(Exception):
    status_code: ClassVar[int] = 400
    default_detail: ClassVar[str] = "Bad request"

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
    status_code = 422
    default_detail = "Invalid request"


class RateLimited(TandemError):
    status_code = 429
    default_detail = "Too many requests"


class ServiceUnavailable(TandemError):
    status_code = 503
    default_detail = "Service unavailable"


async def _handle_tandem_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TandemError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TandemError, _handle_tandem_error)
