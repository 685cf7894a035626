"""Console sessions: a login like the API's, carried by a cookie, and the CSRF check.

Signing in starts a `LoginSession` exactly as `POST /auth/login` does; the cookie holds that
login's refresh token (HttpOnly, SameSite=Lax, Secure over https), which only its hash in the
database can match. Every request resolves the user from the database again: a signed-out
login, a deactivated user or a lower role takes effect at the next request, and the scopes
are never more than the user's role grants today.

Each form that changes something carries a token derived from the login (HMAC of its id with
the JWT secret) in a hidden field; a request without the right one is refused (403). The
sign-in form itself, which has no login yet, uses a random value held in a cookie as well as
in the form (double submit).
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.datastructures import FormData

from tandem.console.web import ConsoleRoute, SignInRequired, redirect, render
from tandem.db import SessionDep
from tandem.errors import Forbidden, RateLimited, Unauthorized
from tandem.identity import logins
from tandem.identity.principal import VERIFY_FIRST, Principal, principal_from_refresh_token
from tandem.identity.scopes import Scope
from tandem.identity.security import TokenSigner
from tandem.ratelimit import RateLimiter, client_address
from tandem.routing import Router
from tandem.settings import Settings

SESSION_COOKIE = "tandem_console"
LOGIN_CSRF_COOKIE = "tandem_console_login"
CSRF_FIELD = "csrf_token"
CSRF_REFUSED = (
    "This form did not carry a valid security token (it is old, or it did not come from "
    "this site). Reload the page and try again."
)

router = Router(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)


@dataclass(frozen=True)
class ConsoleUser:
    principal: Principal
    name: str
    email: str
    csrf_token: str

    def can(self, scope: Scope | str) -> bool:
        return self.principal.has(Scope(scope))


def _signer(request: Request) -> TokenSigner:
    signer: TokenSigner = request.app.state.token_signer
    return signer


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def csrf_token_for(signer: TokenSigner, login_id: uuid.UUID) -> str:
    return hmac.new(
        signer.secret.encode(), f"console-csrf:{login_id}".encode(), hashlib.sha256
    ).hexdigest()


async def _resolve(request: Request, session: SessionDep) -> ConsoleUser:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    login = await principal_from_refresh_token(session, token)
    if login is None:
        raise SignInRequired
    if login.principal.verification_pending:
        raise Forbidden(VERIFY_FIRST)
    console_user = ConsoleUser(
        principal=login.principal,
        name=login.full_name,
        email=login.email,
        csrf_token=csrf_token_for(_signer(request), login.login_id),
    )
    request.state.console_user = console_user  # for error pages
    return console_user


CurrentUser = Annotated[ConsoleUser, Depends(_resolve)]


async def _checked_form(request: Request, user: CurrentUser) -> FormData:
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not isinstance(token, str) or not hmac.compare_digest(token, user.csrf_token):
        raise Forbidden(CSRF_REFUSED)
    return form


CheckedForm = Annotated[FormData, Depends(_checked_form)]


def require(user: ConsoleUser, *scopes: Scope) -> None:
    """The 403 page unless the user holds every scope (the API's own check)."""
    user.principal.require(*scopes)


def _safe_next(value: str | None) -> str:
    """Only a path of the console itself: never another site (no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("/ui//"):
        return value
    return "/ui/inbox"


def _login_page(
    request: Request, *, error: str | None = None, email: str = "", status_code: int = 200
) -> Response:
    form_token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {
            "user": None,
            "error": error,
            "email": email,
            "csrf_token": form_token,
            "next": _safe_next(request.query_params.get("next")),
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        form_token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui/login",
    )
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    email = str(form.get("email", "")).strip()
    password = str(form.get("password", ""))
    sent = form.get(CSRF_FIELD)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden(CSRF_REFUSED)
    settings = _settings(request)
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        await limiter.hit(settings.rate_limit_login, "login", f"{client_address(request)}|{email}")
        issued = await logins.login_with_password(
            session,
            _signer(request),
            timedelta(days=settings.refresh_token_days),
            email=email,
            password=password,
            max_age=timedelta(days=settings.session_max_days),
        )
    except (Unauthorized, RateLimited) as exc:
        return _login_page(request, error=exc.detail, email=email, status_code=exc.status_code)
    response = redirect(_safe_next(str(form.get("next", ""))))
    response.set_cookie(
        SESSION_COOKIE,
        issued.refresh_token,
        max_age=settings.refresh_token_days * 86400,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui/login")
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, _form: CheckedForm) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await logins.logout(session, token)
    response = redirect("/ui/login?notice=signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


@router.get("")
@router.get("/")
async def home() -> Response:
    return redirect("/ui/inbox")
