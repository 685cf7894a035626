"""Logins: access tokens, refresh-token rotation with reuse detection, logout.

A login is a `LoginSession`; its refresh tokens form a chain in which exactly one is usable.
Exchanging a token marks it used (a guarded update, so two racing refreshes cannot both win)
and issues the next. Presenting a used token means it was copied: the whole login is revoked,
its access tokens included (they carry the login's id as `sid`).
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NoReturn

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit import service as audit
from tandem.audit.service import Actor, AuditAction, Outcome
from tandem.db import compare_and_set
from tandem.errors import Conflict, Unauthorized
from tandem.identity.models import LoginSession, RefreshToken, User
from tandem.identity.principal import LOGIN_EXPIRED, login_ends_at
from tandem.identity.scopes import Role, Scope, narrow, scopes_for
from tandem.identity.security import (
    BEARER_CHALLENGE,
    TokenSigner,
    new_refresh_token,
    sha256_hex,
    verify_password,
)

INCORRECT_CREDENTIALS = "Incorrect email or password"
AMBIGUOUS_LOGIN = (
    "This e-mail and password sign in to more than one organization; send organization_id to choose"
)
DEFAULT_MAX_AGE = timedelta(days=30)


class IncorrectCredentials(Unauthorized):
    keeps_changes = True  # the failed login's audit event is committed

    def __init__(self) -> None:
        super().__init__(INCORRECT_CREDENTIALS, headers=BEARER_CHALLENGE)


class RefreshTokenReused(Unauthorized):
    keeps_changes = True  # the revocation must be committed even though the request fails
    default_detail = (
        "Refresh token already used: every token of this login has been revoked. Sign in again."
    )


class RefreshVerdict(StrEnum):
    rotate = "rotate"
    signed_out = "signed_out"
    reused = "reused"
    expired = "expired"
    login_expired = "login_expired"
    inactive = "inactive"


def judge_refresh(
    *,
    login_revoked: bool,
    already_used: bool,
    expired: bool,
    user_active: bool,
    login_expired: bool = False,
) -> RefreshVerdict:
    """What presenting a known refresh token leads to; the order of the checks matters.

    A signed-out login stays signed out (no second revocation); a used token is reuse even
    when it has also expired, because a copied token is worth reporting whatever its age.
    """
    if login_revoked:
        return RefreshVerdict.signed_out
    if already_used:
        return RefreshVerdict.reused
    if login_expired:
        return RefreshVerdict.login_expired
    if expired:
        return RefreshVerdict.expired
    if not user_active:
        return RefreshVerdict.inactive
    return RefreshVerdict.rotate


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    scopes: frozenset[Scope]

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))


_REFUSALS = {
    RefreshVerdict.signed_out: "This login was signed out; sign in again",
    RefreshVerdict.expired: "Refresh token expired; sign in again",
    RefreshVerdict.login_expired: LOGIN_EXPIRED,
    RefreshVerdict.inactive: "User is inactive",
}


def _now() -> datetime:
    return datetime.now(UTC)


async def _issue_refresh_token(
    session: AsyncSession, login: LoginSession, ttl: timedelta, max_age: timedelta
) -> str:
    """The next token of the chain: valid for `ttl` (the idle timeout), never past the login."""
    token = new_refresh_token()
    expires_at = min(_now() + ttl, login_ends_at(login, max_age))
    session.add(
        RefreshToken(session_id=login.id, token_hash=sha256_hex(token), expires_at=expires_at)
    )
    await session.flush()
    return token


def _live_scopes(user: User, login: LoginSession) -> frozenset[Scope]:
    """The login's scopes that the user's role grants today (a demotion shows at once)."""
    return frozenset(scope for scope in scopes_for(Role(user.role)) if scope.value in login.scopes)


def _access_token(signer: TokenSigner, user: User, login: LoginSession) -> str:
    return signer.encode(
        user_id=user.id,
        organization_id=user.organization_id,
        session_id=login.id,
        scopes=_live_scopes(user, login),
    )


async def start_login(
    session: AsyncSession,
    signer: TokenSigner,
    refresh_ttl: timedelta,
    user: User,
    requested_scopes: set[str] | None = None,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> IssuedTokens:
    scopes = narrow(scopes_for(Role(user.role)), requested_scopes)
    login = LoginSession(user_id=user.id, scopes=sorted(scopes))
    session.add(login)
    await session.flush()
    user.last_login_at = _now()
    return IssuedTokens(
        access_token=_access_token(signer, user, login),
        refresh_token=await _issue_refresh_token(session, login, refresh_ttl, max_age),
        expires_in=int(signer.ttl.total_seconds()),
        scopes=scopes,
    )


async def login_with_password(
    session: AsyncSession,
    signer: TokenSigner,
    refresh_ttl: timedelta,
    *,
    email: str,
    password: str,
    requested_scopes: set[str] | None = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
    organization_id: uuid.UUID | None = None,
) -> IssuedTokens:
    """The same error, after the same work, whether the e-mail or the password is wrong.

    An address may have an account in several organizations: the password picks the account;
    when it opens more than one, `organization_id` must choose (409 otherwise).
    """
    query = select(User).where(User.email == email.lower(), User.is_active.is_(True))
    if organization_id is not None:
        query = query.where(User.organization_id == organization_id)
    candidates = (await session.scalars(query.order_by(User.created_at, User.id))).all()
    matches = [u for u in candidates if await verify_password(password, u.password_hash)]
    if not candidates:
        await verify_password(password, None)
        # Belongs to no organization: kept for the operators (log), shown to no tenant.
        await audit.record(
            session,
            AuditAction.login,
            organization_id=None,
            outcome=Outcome.failure,
            details={"email": email.lower()[:320], "reason": "unknown_email"},
        )
    if not matches:
        for candidate in candidates:
            await audit.record(
                session,
                AuditAction.login,
                organization_id=candidate.organization_id,
                target=("user", candidate.id),
                outcome=Outcome.failure,
                details={"reason": "wrong_password"},
            )
        raise IncorrectCredentials()
    if len(matches) > 1:
        raise Conflict(AMBIGUOUS_LOGIN)
    user = matches[0]
    tokens = await start_login(
        session, signer, refresh_ttl, user, requested_scopes, max_age=max_age
    )
    await audit.record(
        session,
        AuditAction.login,
        organization_id=user.organization_id,
        actor=Actor(user.id),
        target=("user", user.id),
    )
    return tokens


async def revoke_login(session: AsyncSession, login_id: uuid.UUID, reason: str) -> None:
    await session.execute(
        update(LoginSession)
        .where(LoginSession.id == login_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=_now(), revoked_reason=reason)
    )


async def revoke_all_logins(session: AsyncSession, user_id: uuid.UUID, reason: str) -> None:
    await session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=_now(), revoked_reason=reason)
    )


async def refresh(
    session: AsyncSession,
    signer: TokenSigner,
    refresh_ttl: timedelta,
    token: str,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> IssuedTokens:
    row = (
        await session.execute(
            select(RefreshToken, LoginSession, User)
            .join(LoginSession, LoginSession.id == RefreshToken.session_id)
            .join(User, User.id == LoginSession.user_id)
            .where(RefreshToken.token_hash == sha256_hex(token))
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("Invalid refresh token")
    presented, login, user = row
    verdict = judge_refresh(
        login_revoked=login.revoked_at is not None,
        already_used=presented.used_at is not None,
        expired=presented.expires_at <= _now(),
        user_active=user.is_active,
        login_expired=login_ends_at(login, max_age) <= _now(),
    )
    if verdict is RefreshVerdict.reused:
        await _revoke_reused(session, login, user)
    if verdict is not RefreshVerdict.rotate:
        raise Unauthorized(_REFUSALS[verdict])

    claimed = await compare_and_set(
        session,
        update(RefreshToken)
        .where(RefreshToken.id == presented.id, RefreshToken.used_at.is_(None))
        .values(used_at=_now()),
    )
    if not claimed:
        # Another request exchanged this token between our read and our write.
        await _revoke_reused(session, login, user)
    return IssuedTokens(
        access_token=_access_token(signer, user, login),
        refresh_token=await _issue_refresh_token(session, login, refresh_ttl, max_age),
        expires_in=int(signer.ttl.total_seconds()),
        scopes=_live_scopes(user, login),
    )


async def _revoke_reused(session: AsyncSession, login: LoginSession, user: User) -> NoReturn:
    await revoke_login(session, login.id, "refresh_token_reused")
    await audit.record(
        session,
        AuditAction.refresh_token_reused,
        organization_id=user.organization_id,
        target=("user", user.id),
        outcome=Outcome.failure,
        details={"login_id": str(login.id)},
    )
    raise RefreshTokenReused()


async def logout(session: AsyncSession, token: str) -> None:
    """Ends the login the token belongs to; an unknown token is not an error (nothing to end)."""
    login_id = await session.scalar(
        select(RefreshToken.session_id).where(RefreshToken.token_hash == sha256_hex(token))
    )
    if login_id is not None:
        await revoke_login(session, login_id, "logout")
