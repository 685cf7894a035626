"""HTTP for identity: auth, users, the current organization, projects and API keys."""

import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from tandem.db import SessionDep, read_connection
from tandem.errors import Unauthorized, error_responses
from tandem.identity import accounts, api_keys, logins, projects, service
from tandem.identity.models import User
from tandem.identity.principal import (
    ApiRoute,
    CurrentPrincipal,
    Principal,
    get_token_signer,
    require_scopes,
)
from tandem.identity.schemas import (
    AcceptInvitationIn,
    ApiKeyCreatedOut,
    ApiKeyIn,
    ApiKeyOut,
    InvitationIn,
    InvitationOut,
    LoginIn,
    MeOut,
    NoticeOut,
    OrganizationOut,
    PasswordResetConfirmIn,
    PasswordResetIn,
    ProjectIn,
    ProjectOut,
    ProjectUpdateIn,
    RefreshIn,
    RegisterIn,
    RegisterOut,
    TokenOut,
    UserCreateIn,
    UserOut,
    UserUpdateIn,
    VerifyEmailIn,
)
from tandem.identity.scopes import Scope
from tandem.identity.security import TokenSigner
from tandem.pagination import Page, PageParamsDep
from tandem.ratelimit import (
    Budget,
    PrincipalLimit,
    RateLimiter,
    client_address,
    limit_principal,
    rate_limit,
    report,
)
from tandem.routing import Router
from tandem.settings import Settings

# Auth routes take no credentials; every other route answers 401/403 the same way.
public = Router(route_class=ApiRoute, prefix="/api/v1", tags=["auth"])
router = Router(route_class=ApiRoute, prefix="/api/v1", responses=error_responses(401, 403))

VALIDATION_ERROR: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Validation Error",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }
}


async def _signer(request: Request) -> TokenSigner:  # async: no worker thread per request
    return get_token_signer(request)


SignerDep = Annotated[TokenSigner, Depends(_signer)]
UsersAdmin = Annotated[Principal, Depends(require_scopes(Scope.users_admin))]
ProjectsReader = Annotated[Principal, Depends(require_scopes(Scope.projects_read))]
ProjectsWriter = Annotated[Principal, Depends(require_scopes(Scope.projects_write))]


def _refresh_ttl(request: Request) -> timedelta:
    settings: Settings = request.app.state.settings
    return timedelta(days=settings.refresh_token_days)


def _max_age(request: Request) -> timedelta:
    settings: Settings = request.app.state.settings
    return timedelta(days=settings.session_max_days)


def _token_out(tokens: logins.IssuedTokens) -> TokenOut:
    return TokenOut(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        scope=tokens.scope,
    )


# --- auth ----------------------------------------------------------------------------------


# Per client address, and over all of them: each registration makes an organization.
limit_registration = rate_limit(
    lambda request, s: Budget(s.rate_limit_register, "register", client_address(request)),
    lambda _, s: Budget(s.rate_limit_register_global, "register-global", "all"),
)


@public.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(403, 409, 429),
    dependencies=[Depends(limit_registration)],
)
async def register(
    body: RegisterIn, request: Request, session: SessionDep, signer: SignerDep
) -> RegisterOut:
    user = await service.register(
        session,
        request.app.state.settings,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        organization_name=body.organization_name,
    )
    return await _signed_in(request, session, signer, user)


async def _signed_in(
    request: Request, session: SessionDep, signer: TokenSigner, user: User
) -> RegisterOut:
    """The user and the tokens of a login started for them now."""
    tokens = await logins.start_login(
        session, signer, _refresh_ttl(request), user, max_age=_max_age(request)
    )
    return RegisterOut(
        user=UserOut.model_validate(user),
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


async def login_credentials(request: Request) -> LoginIn:
    """OAuth2 password form (`username`, `password`, `scope`) or JSON (`email`, `password`)."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            scope = form.get("scope")
            return LoginIn(
                email=form.get("username"),
                password=form.get("password"),
                scopes=scope.split() if isinstance(scope, str) and scope else None,
            )
        return LoginIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


@public.post(
    "/auth/login",
    responses=error_responses(401, 409, 429) | VALIDATION_ERROR,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["username", "password"],
                        "properties": {
                            "username": {"type": "string", "description": "E-mail"},
                            "password": {"type": "string"},
                            "scope": {"type": "string", "description": "Scopes, by spaces"},
                        },
                    }
                },
                "application/json": {"schema": LoginIn.model_json_schema()},
            },
        }
    },
)
async def login(
    request: Request,
    session: SessionDep,
    signer: SignerDep,
    credentials: Annotated[LoginIn, Depends(login_credentials)],
) -> TokenOut:
    settings: Settings = request.app.state.settings
    limiter: RateLimiter = request.app.state.rate_limiter
    address, email = client_address(request), credentials.email.lower()
    # Failures per account, whatever the address: a locked account is refused before its
    # password is checked, so guessing from many addresses gains nothing.
    failures = Budget(settings.rate_limit_login_failures, "login-failures", email)
    await limiter.check(failures)
    budgets = [
        Budget(settings.rate_limit_login, "login", f"{address}|{email}"),
        Budget(settings.rate_limit_login_address, "login-address", address),
    ]
    report(request, await limiter.hit_all(budgets))
    try:
        tokens = await logins.login_with_password(
            session,
            signer,
            _refresh_ttl(request),
            email=credentials.email,
            password=credentials.password,
            requested_scopes=set(credentials.scopes) if credentials.scopes else None,
            max_age=_max_age(request),
            organization_id=credentials.organization_id,
        )
    except Unauthorized:
        await limiter.record(failures)
        raise
    return _token_out(tokens)


@public.post("/auth/refresh", responses=error_responses(401))
async def refresh(
    body: RefreshIn, request: Request, session: SessionDep, signer: SignerDep
) -> TokenOut:
    tokens = await logins.refresh(
        session, signer, _refresh_ttl(request), body.refresh_token, max_age=_max_age(request)
    )
    return _token_out(tokens)


@public.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, session: SessionDep) -> None:
    await logins.logout(session, body.refresh_token)


@public.post(
    "/auth/accept-invite", status_code=status.HTTP_201_CREATED, responses=error_responses(409)
)
async def accept_invite(
    body: AcceptInvitationIn, request: Request, session: SessionDep, signer: SignerDep
) -> RegisterOut:
    """Creates the invited account with the password chosen here, and signs it in."""
    user = await accounts.accept_invitation(
        session, token=body.token, password=body.password, full_name=body.full_name
    )
    return await _signed_in(request, session, signer, user)


@public.post("/auth/verify-email")
async def verify_email(body: VerifyEmailIn, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await accounts.verify_email(session, token=body.token))


def password_reset_budgets(request: Request, settings: Settings, email: str) -> list[Budget]:
    """Links mailed per address (the login limit) and per client address: no mail bombing."""
    return [
        Budget(settings.rate_limit_login, "password-reset", email),
        Budget(
            settings.rate_limit_login_address, "password-reset-address", client_address(request)
        ),
    ]


PASSWORD_RESET_FLOOR_SECONDS = 0.1


async def _answer_floor() -> AsyncIterator[None]:
    """Mailing a link (a token, an e-mail, an audit row, their commit) costs a few
    milliseconds that a miss does not: every answer waits out the same floor, so its timing
    tells nothing either. Declared before the session, it ends after the commit."""
    started = time.monotonic()
    yield
    await anyio.sleep(max(0.0, PASSWORD_RESET_FLOOR_SECONDS - (time.monotonic() - started)))


PASSWORD_RESET_SENT = "If an account uses this address, a link to reset its password is on its way"


@public.post(
    "/auth/password-reset", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(429)
)
async def request_password_reset(
    _floor: Annotated[None, Depends(_answer_floor, scope="function")],
    body: PasswordResetIn,
    request: Request,
    session: SessionDep,
) -> NoticeOut:
    """The same answer, after the same time, whether or not the address has an account."""
    settings: Settings = request.app.state.settings
    limiter: RateLimiter = request.app.state.rate_limiter
    budgets = password_reset_budgets(request, settings, body.email)
    report(request, await limiter.hit_all(budgets))
    await accounts.request_password_reset(session, settings, email=body.email)
    return NoticeOut(detail=PASSWORD_RESET_SENT)


@public.post("/auth/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(body: PasswordResetConfirmIn, session: SessionDep) -> None:
    """Sets the new password; every login of the account ends."""
    await accounts.reset_password(session, token=body.token, password=body.password)


# --- users and the organization -------------------------------------------------------------


@router.get("/users/me", tags=["users"])
async def me(principal: CurrentPrincipal) -> MeOut:
    # Read with the credential, so kept with it between requests (credential_cache.py).
    account = principal.account
    assert account is not None, "a request's principal is resolved from its credential"
    return MeOut(
        id=principal.user_id,
        email=account.email,
        full_name=account.full_name,
        role=account.role,
        organization_id=principal.organization_id,
        is_active=True,  # an inactive user's credential is refused
        created_at=account.created_at,
        scopes=sorted(principal.scopes),
    )


@router.post(
    "/users", status_code=status.HTTP_201_CREATED, tags=["users"], responses=error_responses(409)
)
async def create_user(body: UserCreateIn, principal: UsersAdmin, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await service.create_user(session, principal, body))


@router.get("/users", tags=["users"])
async def list_users(
    principal: UsersAdmin, session: SessionDep, page: PageParamsDep
) -> Page[UserOut]:
    users, count = await service.list_users(session, principal, page)
    return Page(items=[UserOut.model_validate(u) for u in users], count=count)


@router.get("/users/{user_id}", tags=["users"], responses=error_responses(404))
async def get_user(user_id: uuid.UUID, principal: UsersAdmin, request: Request) -> UserOut:
    async with read_connection(request) as connection:
        user = await service.get_user_row(connection, principal, user_id)
    return UserOut.model_validate(user)


@router.patch("/users/{user_id}", tags=["users"], responses=error_responses(404, 409))
async def update_user(
    user_id: uuid.UUID, body: UserUpdateIn, principal: UsersAdmin, session: SessionDep
) -> UserOut:
    user = await service.update_user(session, principal, user_id, body)
    return UserOut.model_validate(user)


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["users"],
    responses=error_responses(404, 409),
)
async def deactivate_user(user_id: uuid.UUID, principal: UsersAdmin, session: SessionDep) -> None:
    await service.deactivate_user(session, principal, user_id)


@router.post(
    "/invitations",
    status_code=status.HTTP_201_CREATED,
    tags=["users"],
    responses=error_responses(409),
)
async def invite(
    body: InvitationIn, principal: UsersAdmin, session: SessionDep, request: Request
) -> InvitationOut:
    """E-mails the address a single-use link to join your organization with `role`."""
    invitation = await accounts.invite(
        session, request.app.state.settings, principal, email=body.email, role=body.role
    )
    return InvitationOut.model_validate(invitation)


@router.get("/organizations/current", tags=["organizations"])
async def current_organization(principal: CurrentPrincipal, session: SessionDep) -> OrganizationOut:
    organization = await service.current_organization(session, principal)
    return OrganizationOut.model_validate(organization)


# --- projects -------------------------------------------------------------------------------


@router.post(
    "/projects",
    status_code=status.HTTP_201_CREATED,
    tags=["projects"],
    responses=error_responses(409),
)
async def create_project(
    body: ProjectIn, principal: ProjectsWriter, session: SessionDep
) -> ProjectOut:
    return ProjectOut.model_validate(await projects.create_project(session, principal, body))


@router.get("/projects", tags=["projects"])
async def list_projects(
    principal: ProjectsReader, session: SessionDep, page: PageParamsDep
) -> Page[ProjectOut]:
    items, count = await projects.list_projects(session, principal, page)
    return Page(items=[ProjectOut.model_validate(p) for p in items], count=count)


@router.get("/projects/{project_id}", tags=["projects"], responses=error_responses(404))
async def get_project(
    project_id: uuid.UUID, principal: ProjectsReader, session: SessionDep
) -> ProjectOut:
    return ProjectOut.model_validate(await projects.get_project(session, principal, project_id))


@router.patch("/projects/{project_id}", tags=["projects"], responses=error_responses(404, 409))
async def update_project(
    project_id: uuid.UUID, body: ProjectUpdateIn, principal: ProjectsWriter, session: SessionDep
) -> ProjectOut:
    project = await projects.update_project(session, principal, project_id, body)
    return ProjectOut.model_validate(project)


@router.delete(
    "/projects/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["projects"],
    responses=error_responses(404),
)
async def delete_project(
    project_id: uuid.UUID, principal: ProjectsWriter, session: SessionDep
) -> None:
    await projects.delete_project(session, principal, project_id)


# --- API keys -------------------------------------------------------------------------------


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    tags=["api-keys"],
    responses=error_responses(409, 429),
    dependencies=[
        Depends(limit_principal(PrincipalLimit("api-keys", lambda s: s.rate_limit_api_keys)))
    ],
)
async def create_api_key(
    body: ApiKeyIn, principal: CurrentPrincipal, session: SessionDep, request: Request
) -> ApiKeyCreatedOut:
    settings: Settings = request.app.state.settings
    api_key, key = await api_keys.create_api_key(
        session, principal, body, quota=settings.quota_api_keys
    )
    return ApiKeyCreatedOut(**ApiKeyOut.model_validate(api_key).model_dump(), key=key)


@router.get("/api-keys", tags=["api-keys"])
async def list_api_keys(
    principal: CurrentPrincipal, session: SessionDep, page: PageParamsDep
) -> Page[ApiKeyOut]:
    items, count = await api_keys.list_api_keys(session, principal, page)
    return Page(items=[ApiKeyOut.model_validate(k) for k in items], count=count)


@router.delete(
    "/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["api-keys"],
    responses=error_responses(404),
)
async def revoke_api_key(
    key_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> None:
    await api_keys.revoke_api_key(session, principal, key_id)
