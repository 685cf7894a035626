"""Pages the mailed links open: accepting an invitation, confirming an address, choosing a
new password (and asking for a reset link). No session is needed or started: each form carries
the link's single-use token, which no other site knows, so it needs no other CSRF token;
following a link with GET changes nothing (mail scanners open links too), the button does."""

from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from tandem.console.web import ConsoleRoute, redirect, render
from tandem.db import SessionDep
from tandem.identity import accounts
from tandem.identity.router import PASSWORD_RESET_SENT, password_reset_budgets
from tandem.identity.schemas import AcceptInvitationIn, PasswordResetConfirmIn, PasswordResetIn
from tandem.ratelimit import RateLimiter
from tandem.routing import Router
from tandem.settings import Settings

router = Router(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    return render(request, template, {"user": None, **context}, status_code=status_code)


def _form_errors(exc: ValidationError) -> str:
    return "; ".join(str(error["msg"]) for error in exc.errors())


async def _form(
    request: Request, model: type[BaseModel]
) -> tuple[BaseModel | None, str, dict[str, str]]:
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        return model.model_validate(values), "", values
    except ValidationError as exc:
        return None, _form_errors(exc), values


@router.get("/accept-invite")
async def accept_invite_page(request: Request, token: str = "") -> Response:
    return _page(request, "accept_invite.html", token=token)


@router.post("/accept-invite")
async def accept_invite(request: Request, session: SessionDep) -> Response:
    data, error, values = await _form(request, AcceptInvitationIn)
    if not isinstance(data, AcceptInvitationIn):
        return _page(
            request,
            "accept_invite.html",
            422,
            token=values.get("token", ""),
            full_name=values.get("full_name", ""),
            error=error,
        )
    await accounts.accept_invitation(
        session, token=data.token, password=data.password, full_name=data.full_name
    )
    return redirect("/ui/login?notice=joined")


@router.get("/verify-email")
async def verify_email_page(request: Request, token: str = "") -> Response:
    return _page(request, "verify_email.html", token=token)


@router.post("/verify-email")
async def verify_email(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    token = form.get("token")
    await accounts.verify_email(session, token=token if isinstance(token, str) else "")
    return redirect("/ui/login?notice=verified")


@router.get("/reset")
async def reset_page(request: Request, token: str = "") -> Response:
    return _page(request, "reset.html", token=token)


@router.post("/reset")
async def reset(request: Request, session: SessionDep) -> Response:
    data, error, values = await _form(request, PasswordResetConfirmIn)
    if not isinstance(data, PasswordResetConfirmIn):
        return _page(request, "reset.html", 422, token=values.get("token", ""), error=error)
    await accounts.reset_password(session, token=data.token, password=data.password)
    return redirect("/ui/login?notice=password-set")


@router.post("/reset/request")
async def request_reset(request: Request, session: SessionDep) -> Response:
    data, error, values = await _form(request, PasswordResetIn)
    if not isinstance(data, PasswordResetIn):
        return _page(request, "reset.html", 422, email=values.get("email", ""), error=error)
    settings: Settings = request.app.state.settings
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.hit_all(password_reset_budgets(request, settings, data.email))
    await accounts.request_password_reset(session, settings, email=data.email)
    return _page(request, "reset.html", sent=PASSWORD_RESET_SENT)
