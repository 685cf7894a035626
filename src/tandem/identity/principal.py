"""Who is calling: one principal (a user or an API key) and the scope check every router uses.

@router.post("/run")
async def run(principal: Annotated[Principal, Depends(require_scopes(Scope.agent_run))]): ...
"""

import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import ReadConnection, read_connection
from tandem.errors import Forbidden, Unauthorized
from tandem.identity.credential_cache import CredentialCache
from tandem.identity.models import ApiKey, LoginSession, RefreshToken, User
from tandem.identity.scopes import Role, Scope, scopes_for
from tandem.identity.security import BEARER_CHALLENGE, AccessClaims, TokenSigner, sha256_hex
from tandem.settings import Settings

LOGIN_EXPIRED = "Login expired; sign in again"


def login_ends_at(login: LoginSession, max_age: timedelta) -> datetime:
    """The absolute end of a login: refreshing never carries it past this."""
    return login.created_at + max_age


NO_CREDENTIALS = (
    "Not authenticated: send an `Authorization: Bearer <access token>` header "
    "or an `X-API-Key: <key>` header"
)

API_KEY_HEADER = "X-API-Key"


class PrincipalKind(StrEnum):
    user = "user"
    api_key = "api_key"


@dataclass(frozen=True)
class Account:
    """The user behind a principal as /users/me shows it, read with the credential: the
    cache that keeps the principal drops it when the user's row changes."""

    email: str
    full_name: str
    role: Role
    created_at: datetime


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: uuid.UUID  # the user's id, or the API key's
    user_id: uuid.UUID  # the user, or the user who created the key
    organization_id: uuid.UUID
    scopes: frozenset[Scope]
    # A bearer token's login: its id, its absolute end, and whether it was narrowed below
    # the role (None, None, False for an API key).
    login_id: uuid.UUID | None = None
    login_ends_at: datetime | None = None
    narrowed: bool = False
    # Registered itself and has not yet followed the link mailed to its address.
    verification_pending: bool = False
    # Resolved from a credential on a request; None where made otherwise (a job's user).
    account: Account | None = None

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes

    def require(self, *scopes: Scope) -> None:
        """403 naming what is missing unless this principal holds every one of `scopes`."""
        missing = sorted(scope.value for scope in scopes if not self.has(scope))
        if missing:
            raise Forbidden(f"Missing required scope: {', '.join(missing)}")

    def require_password_login(self, detail: str) -> None:
        """403 `detail` unless this is a bearer token of a login made with a password."""
        if self.login_id is None:
            raise Forbidden(detail)


def effective_scopes(granted: Collection[str], role: str) -> frozenset[Scope]:
    """What a token or key carries, never more than its user's role grants today."""
    allowed = scopes_for(Role(role))
    return frozenset(scope for scope in allowed if scope.value in granted)


# Each credential is resolved with one query of plain columns (no ORM objects): the key or the
# login, joined to its user. `get_principal` keeps what it resolved in the app's
# CredentialCache, which drops it as soon as any credential changes (credential_cache.py): a
# revocation, a logout, a deactivation or a role change takes effect at the next request.
_LOGIN_COLUMNS = (
    User.id,
    User.organization_id,
    User.role,
    User.is_active,
    LoginSession.id,
    LoginSession.created_at,
    LoginSession.revoked_at,
    User.verification_pending,
)
_ACCOUNT_COLUMNS = (User.email, User.full_name, User.role, User.created_at)
_ACCESS_TOKEN_QUERY = (
    select(*_LOGIN_COLUMNS, *_ACCOUNT_COLUMNS)
    .join(LoginSession, LoginSession.user_id == User.id)
    .where(User.id == bindparam("user_id"), LoginSession.id == bindparam("login_id"))
)
_API_KEY_QUERY = (
    select(
        ApiKey.id,
        ApiKey.organization_id,
        ApiKey.scopes,
        ApiKey.revoked_at,
        ApiKey.expires_at,
        User.id,
        User.role,
        User.is_active,
        *_ACCOUNT_COLUMNS,
    )
    .join(User, User.id == ApiKey.created_by_id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)
_REFRESH_TOKEN_QUERY = (
    select(
        *_LOGIN_COLUMNS,
        LoginSession.scopes,
        RefreshToken.used_at,
        RefreshToken.expires_at,
        User.full_name,
        User.email,
    )
    .join(LoginSession, LoginSession.user_id == User.id)
    .join(RefreshToken, RefreshToken.session_id == LoginSession.id)
    .where(RefreshToken.token_hash == bindparam("token_hash"))
)


async def principal_from_access_token(
    connection: ReadConnection, claims: AccessClaims, max_age: timedelta
) -> Principal:
    row = (
        await connection.execute(
            _ACCESS_TOKEN_QUERY, {"user_id": claims.user_id, "login_id": claims.session_id}
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("Invalid access token", headers=BEARER_CHALLENGE)
    user_id, organization_id, role, is_active, login_id, login_created_at, revoked_at = row[:7]
    verification_pending = row[7]
    account = _account(row[8:])
    if not is_active or organization_id != claims.organization_id:
        raise Unauthorized("User is inactive or no longer exists", headers=BEARER_CHALLENGE)
    if revoked_at is not None:
        raise Unauthorized("This login was signed out; sign in again", headers=BEARER_CHALLENGE)
    ends_at = login_created_at + max_age
    if ends_at <= datetime.now(UTC):
        raise Unauthorized(LOGIN_EXPIRED, headers=BEARER_CHALLENGE)
    scopes = effective_scopes(claims.scopes, role)
    return Principal(
        kind=PrincipalKind.user,
        id=user_id,
        user_id=user_id,
        organization_id=organization_id,
        scopes=scopes,
        login_id=login_id,
        login_ends_at=ends_at,
        narrowed=scopes != scopes_for(Role(role)),
        verification_pending=verification_pending,
        account=account,
    )


def _account(columns: Sequence[Any]) -> Account:
    """The Account from a row's `_ACCOUNT_COLUMNS`."""
    email, full_name, role, created_at = columns
    return Account(email=email, full_name=full_name, role=Role(role), created_at=created_at)


async def principal_from_api_key(
    connection: ReadConnection, key_hash: str
) -> tuple[Principal, datetime | None]:
    """The key's principal, and when the key expires."""
    row = (await connection.execute(_API_KEY_QUERY, {"key_hash": key_hash})).one_or_none()
    if row is None:
        raise Unauthorized("Invalid API key")
    key_id, organization_id, granted, revoked_at, expires_at, user_id, role, is_active = row[:8]
    if revoked_at is not None:
        raise Unauthorized("API key revoked")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Unauthorized("API key expired")
    if not is_active:
        raise Unauthorized("API key's owner is inactive")
    principal = Principal(
        kind=PrincipalKind.api_key,
        id=key_id,
        user_id=user_id,
        organization_id=organization_id,
        scopes=effective_scopes(granted, role),
        account=_account(row[8:]),
    )
    return principal, expires_at


@dataclass(frozen=True)
class RefreshLogin:
    """The login a refresh token (the console's cookie) belongs to, its user checked."""

    principal: Principal  # as the API sees it, without the login (no password-only actions)
    login_id: uuid.UUID
    full_name: str
    email: str


async def principal_from_refresh_token(session: AsyncSession, token: str) -> RefreshLogin | None:
    """None unless the token is the current one of a login not signed out, not yet expired,
    of an active user: the console resolves its cookie with this on every request."""
    connection = await session.connection()
    row = (
        await connection.execute(_REFRESH_TOKEN_QUERY, {"token_hash": sha256_hex(token)})
    ).one_or_none()
    if row is None:
        return None
    user_id, organization_id, role, is_active, login_id, _, revoked_at, verification_pending = row[
        :8
    ]
    granted, used_at, token_expires_at, full_name, email = row[8:]
    if (
        revoked_at is not None
        or used_at is not None
        or token_expires_at <= datetime.now(UTC)
        or not is_active
    ):
        return None
    principal = Principal(
        kind=PrincipalKind.user,
        id=user_id,
        user_id=user_id,
        organization_id=organization_id,
        scopes=effective_scopes(granted, role),
        verification_pending=verification_pending,
    )
    return RefreshLogin(principal, login_id, full_name, email)


def get_token_signer(request: Request) -> TokenSigner:
    signer: TokenSigner = request.app.state.token_signer
    return signer


async def get_principal(request: Request) -> Principal:
    """The caller, from its `X-API-Key` or `Authorization: Bearer` header.

    The headers are read here rather than through FastAPI's security dependencies, and the
    database only when the credential is not in the app's CredentialCache: each dependency
    FastAPI resolves costs every request tens of microseconds. `ApiRoute` documents the two
    schemes in OpenAPI as those dependencies would. Resolved once a request: the request's
    scope keeps it for whichever dependency asks next (`require_scopes` calls this itself).
    """
    state: dict[str, Any] = request.scope.setdefault("state", {})
    known: Principal | None = state.get(_PRINCIPAL_KEY)
    if known is None:
        known = state[_PRINCIPAL_KEY] = await _resolve_principal(request)
    return known


async def _resolve_principal(request: Request) -> Principal:
    cache: CredentialCache = request.app.state.credential_cache
    now = datetime.now(UTC)
    headers = request.headers
    if api_key := headers.get(API_KEY_HEADER):
        key_hash = sha256_hex(api_key)
        stamp = await cache.stamp()
        principal: Principal | None = cache.get(("api_key", key_hash), stamp, now)
        if principal is None:
            async with read_connection(request) as connection:
                principal, expires_at = await principal_from_api_key(connection, key_hash)
            cache.put(("api_key", key_hash), stamp, principal, expires_at)
        return principal
    authorization = headers.get("authorization")
    scheme, token = get_authorization_scheme_param(authorization)
    if scheme.lower() == "bearer" and token:
        stamp = await cache.stamp()
        principal = cache.get(("bearer", token), stamp, now)
        if principal is None:
            claims = get_token_signer(request).decode(token)
            settings: Settings = request.app.state.settings
            max_age = timedelta(days=settings.session_max_days)
            async with read_connection(request) as connection:
                principal = await principal_from_access_token(connection, claims, max_age)
            ends_at = min(claims.expires_at, principal.login_ends_at or claims.expires_at)
            cache.put(("bearer", token), stamp, principal, ends_at)
        refuse_unverified(request, principal)
        return principal
    if authorization:
        raise Unauthorized(
            "The Authorization header must be `Bearer <access token>`", headers=BEARER_CHALLENGE
        )
    raise Unauthorized(NO_CREDENTIALS, headers=BEARER_CHALLENGE)


_PRINCIPAL_KEY = "tandem.principal"
# The dependencies that resolve the principal (`get_principal`, and each `require_scopes`).
_AUTHENTICATING: set[Callable[..., Any]] = {get_principal}


def _authenticates(dependant: Dependant) -> bool:
    return any(sub.call in _AUTHENTICATING or _authenticates(sub) for sub in dependant.dependencies)


# What FastAPI's HTTPBearer and APIKeyHeader dependencies would put in OpenAPI.
SECURITY_SCHEMES = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from /auth/login",
    },
    "APIKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
        "description": "An API key",
    },
}


class ApiRoute(APIRoute):
    """A route of the API: one that authenticates its caller says so in OpenAPI (either
    credential serves), with the components `SECURITY_SCHEMES` the app adds."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if _authenticates(self.dependant):
            security: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
            self.openapi_extra = {"security": security, **(self.openapi_extra or {})}


VERIFY_FIRST = "Verify your e-mail address first"
# What an account whose address is not yet verified may reach (verification itself is public).
UNVERIFIED_MAY_REACH = frozenset({"/api/v1/users/me"})


def refuse_unverified(request: Request, principal: Principal) -> None:
    """403 for an account that must verify its address first, except on /users/me."""
    if principal.verification_pending and request.scope["path"] not in UNVERIFIED_MAY_REACH:
        raise Forbidden(VERIFY_FIRST)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_scopes(*required: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that returns the principal when it holds every scope in `required`. It
    calls `get_principal` itself rather than through `Depends`: a dependency of a dependency
    costs FastAPI ~10-20 us a request."""

    async def check(request: Request) -> Principal:
        principal = await get_principal(request)
        principal.require(*required)
        return principal

    _AUTHENTICATING.add(check)
    return check


async def principal_of_user(session: AsyncSession, user_id: uuid.UUID) -> Principal | None:
    """The user acting with all their role's scopes, for work done on their behalf outside a
    request (a job they submitted); None for a user who is gone or inactive."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    return Principal(
        kind=PrincipalKind.user,
        id=user.id,
        user_id=user.id,
        organization_id=user.organization_id,
        scopes=scopes_for(Role(user.role)),
    )
