"""What every console page shares: the templates, the route class that turns domain errors into
HTML pages and adds the security headers, and the one-word notices a redirect may carry."""

from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from tandem import __version__
from tandem.errors import TandemError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["version"] = __version__

# No inline script or style anywhere: every script and stylesheet is a file under /ui/static.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# What a redirect after a form may tell the next page: a fixed word, never text from the request.
NOTICES = {
    "signed-out": "You are signed out.",
    "approve": "Approved: the drafts are published.",
    "reject": "Rejected; the feedback is stored.",
    "edit": "Sent back with your feedback: the next revision is being written.",
    "revised": "This thread changed since you loaded it: here is what it is now. "
    "Read it before deciding.",
    "feedback-needed": "Sending back needs feedback: say what should change.",
    "not-carried-out": "Approved, but it could not be carried out any more: see the error below.",
    "retried": "The job was sent back to the queue.",
    "cancelled": "The job was cancelled (or its cancellation requested).",
    "job-changed": "The job changed since you loaded it: here is what it is now.",
    "generating": "Generation started.",
    "assigned": "Assignment added.",
    "joined": "Your account is ready: sign in.",
    "verified": "Your address is confirmed: sign in.",
    "password-set": "Your password is set and every earlier sign-in has ended: sign in.",
}

SIGN_IN_PATH = "/ui/login"


class SignInRequired(Exception):
    """No console session (or one that ended): the browser is sent to the sign-in page."""


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{SIGN_IN_PATH}?next={quote(target, safe='')}", status_code=303)


def redirect(url: str) -> RedirectResponse:
    """Post/redirect/get: a 303 so the browser follows with a GET."""
    return RedirectResponse(url, status_code=303)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return templates.TemplateResponse(
        request, template, {"notice": notice, **context}, status_code=status_code
    )


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    titles = {403: "Not allowed", 404: "Not found", 409: "Conflict", 429: "Too many requests"}
    user = getattr(request.state, "console_user", None)
    return render(
        request,
        "error.html",
        {"user": user, "title": titles.get(status_code, "Cannot do that"), "message": message},
        status_code=status_code,
    )


def _validation_page(request: Request, exc: RequestValidationError) -> HTMLResponse:
    errors = exc.errors()
    if any(error["loc"][:1] == ("path",) for error in errors):
        return error_page(request, 404, "No such page.")
    message = "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in errors)
    return error_page(request, 422, message)


class ConsoleRoute(APIRoute):
    """A console route answers HTML whatever happens: domain errors become error pages (the
    request's transaction has already been rolled back by then), a missing session a
    redirect to the sign-in page; every answer carries the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            response: Response
            try:
                response = await handle(request)
            except SignInRequired:
                response = sign_in_redirect(request)
            except TandemError as exc:
                response = error_page(request, exc.status_code, exc.detail)
                for name, value in exc.headers.items():
                    if name.lower() == "retry-after":
                        response.headers[name] = value
            except RequestValidationError as exc:
                response = _validation_page(request, exc)
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler
