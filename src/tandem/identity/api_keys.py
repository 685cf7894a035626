"""API keys: shown once, stored as a hash, never carrying more scopes than their creator."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit import service as audit
from tandem.audit.service import AuditAction
from tandem.errors import Forbidden, Invalid, NotFound
from tandem.identity.models import ApiKey
from tandem.identity.principal import Principal
from tandem.identity.schemas import ApiKeyIn
from tandem.identity.scopes import Scope
from tandem.identity.security import new_api_key, sha256_hex
from tandem.pagination import PageParams, paginate
from tandem.quotas import enforce_quota

PASSWORD_LOGIN_ONLY = "API keys are created and revoked with a password login, not an API key"


async def create_api_key(
    session: AsyncSession, principal: Principal, data: ApiKeyIn, *, quota: int
) -> tuple[ApiKey, str]:
    """The stored key and the key itself, which exists nowhere else after this call; 409
    when the organization already has `quota` keys not revoked.

    Only a password login creates keys, never with more scopes than it holds; a login narrowed
    below its role only creates keys that expire by the time the login itself ends.
    """
    principal.require_password_login(PASSWORD_LOGIN_ONLY)
    beyond = sorted(scope.value for scope in set(data.scopes) - principal.scopes)
    if beyond:
        raise Forbidden(f"Cannot grant scopes you do not have: {', '.join(beyond)}")
    if data.expires_at is not None:
        if data.expires_at.tzinfo is None:
            raise Invalid(
                "expires_at needs a timezone, e.g. 2030-01-01T00:00:00Z", loc=("body", "expires_at")
            )
        if data.expires_at <= datetime.now(UTC):
            raise Invalid("expires_at must be in the future", loc=("body", "expires_at"))
    if principal.narrowed and principal.login_ends_at is not None:
        ends = principal.login_ends_at
        if data.expires_at is None or data.expires_at > ends:
            raise Forbidden(
                "A login narrowed to some scopes creates only keys that expire by the end of "
                f"the login ({ends.isoformat()}); sign in without narrowing for longer keys"
            )
    await enforce_quota(
        session,
        ApiKey,
        principal.organization_id,
        ApiKey.revoked_at.is_(None),
        limit=quota,
        what="API keys",
        remedy="revoke one first",
    )
    key, prefix = new_api_key()
    api_key = ApiKey(
        organization_id=principal.organization_id,
        created_by_id=principal.user_id,
        name=data.name,
        prefix=prefix,
        key_hash=sha256_hex(key),
        scopes=sorted({scope.value for scope in data.scopes}),
        expires_at=data.expires_at,
    )
    session.add(api_key)
    await session.flush()
    await audit.record(
        session,
        AuditAction.api_key_created,
        organization_id=principal.organization_id,
        actor=principal,
        target=("api_key", api_key.id),
        details={"scopes": api_key.scopes, "prefix": api_key.prefix},
    )
    return api_key, key


def _visible_keys(principal: Principal) -> Select[ApiKey]:
    """Admins see every key of their organization; others see the keys they created."""
    query = select(ApiKey).where(
        ApiKey.organization_id == principal.organization_id, ApiKey.revoked_at.is_(None)
    )
    if not principal.has(Scope.users_admin):
        query = query.where(ApiKey.created_by_id == principal.user_id)
    return query


async def list_api_keys(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[Sequence[ApiKey], int]:
    return await paginate(
        session, _visible_keys(principal).order_by(ApiKey.created_at, ApiKey.id), params
    )


async def revoke_api_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> None:
    principal.require_password_login(PASSWORD_LOGIN_ONLY)
    api_key = await session.scalar(_visible_keys(principal).where(ApiKey.id == key_id))
    if api_key is None:
        raise NotFound(f"API key {key_id} not found")
    api_key.revoked_at = datetime.now(UTC)
    await session.flush()
    await audit.record(
        session,
        AuditAction.api_key_revoked,
        organization_id=principal.organization_id,
        actor=principal,
        target=("api_key", api_key.id),
    )


async def revoke_keys_of(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Revokes every key a user created (on deactivation: reactivating does not revive them)."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.created_by_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
