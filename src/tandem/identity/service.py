"""Organizations and users: registration, administration inside one organization."""

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit import service as audit
from tandem.audit.service import AuditAction
from tandem.db import ReadConnection, unique_or_conflict
from tandem.errors import Conflict, Forbidden, NotFound
from tandem.identity import one_time
from tandem.identity.api_keys import revoke_keys_of
from tandem.identity.emails import verification_email, welcome_email
from tandem.identity.logins import revoke_all_logins
from tandem.identity.models import Organization, User
from tandem.identity.one_time import Purpose
from tandem.identity.principal import Principal
from tandem.identity.schemas import UserCreateIn, UserUpdateIn
from tandem.identity.scopes import Role, scopes_for
from tandem.identity.security import hash_password
from tandem.notifications.service import enqueue_email
from tandem.pagination import ColumnsRow, PageParams, paginate
from tandem.settings import EmailVerification, RegistrationPolicy, Settings
from tandem.tenancy import owned, owned_columns, owned_row

EMAIL_TAKEN = "Email already registered"
LAST_ADMIN = "An organization needs at least one active admin; promote another user first"


async def ensure_email_free(session: AsyncSession, organization_id: uuid.UUID, email: str) -> None:
    """409 for an e-mail taken in this organization (another organization's accounts are
    never consulted)."""
    taken = select(User.id).where(User.organization_id == organization_id, User.email == email)
    if await session.scalar(taken) is not None:
        raise Conflict(EMAIL_TAKEN)


async def add_user(
    session: AsyncSession,
    organization: Organization,
    *,
    email: str,
    password: str,
    full_name: str,
    role: Role,
    welcome: bool = True,
) -> User:
    """Inserts the user and (unless `welcome` is False) queues the welcome e-mail; 409 for an
    e-mail taken in this organization."""
    email = email.lower()
    await ensure_email_free(session, organization.id, email)
    user = User(
        organization_id=organization.id,
        email=email,
        password_hash=await hash_password(password),
        full_name=full_name,
        role=role.value,
        is_active=True,
        verification_pending=False,
    )
    async with unique_or_conflict(session, EMAIL_TAKEN):
        session.add(user)
    if welcome:
        subject, body = welcome_email(full_name=full_name)
        await enqueue_email(
            session,
            to=email,
            subject=subject,
            body=body,
            organization_id=organization.id,
            dedupe_key=f"welcome:{user.id}",
        )
    return user


REGISTRATION_REFUSED = {
    RegistrationPolicy.invite: (
        "Registration is by invitation only: ask an admin of your organization to invite you"
    ),
    RegistrationPolicy.closed: "Registration is closed on this server",
}


async def register(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    full_name: str,
    organization_name: str | None,
) -> User:
    """A new organization whose first user is its admin; 409 for an e-mail with any account;
    403 unless TANDEM_REGISTRATION is open. With e-mail verification required, the account
    reaches only /users/me until the link mailed to it is followed.

    Self-registration keeps e-mail unique across organizations (two registrations of one
    address are serialised: SQLite's write lock, an advisory lock on PostgreSQL).
    """
    policy = settings.registration_policy
    if policy is not RegistrationPolicy.open:
        raise Forbidden(REGISTRATION_REFUSED[policy])
    email = email.lower()
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"register:{email}"}
        )
    if await session.scalar(select(User.id).where(User.email == email).limit(1)) is not None:
        raise Conflict(EMAIL_TAKEN)
    organization = Organization(name=organization_name or f"{full_name}'s organization")
    session.add(organization)
    await session.flush()
    verify = settings.email_verification_policy is EmailVerification.required
    user = await add_user(
        session,
        organization,
        email=email,
        password=password,
        full_name=full_name,
        role=Role.admin,
        welcome=not verify,
    )
    if verify:
        user.verification_pending = True
        await send_verification(session, settings, user)
    return user


def link(settings: Settings, page: str, token: str) -> str:
    """A link in an e-mail: the console page at TANDEM_PUBLIC_URL that takes this token."""
    return f"{settings.public_url.rstrip('/')}/ui/{page}?token={token}"


async def send_verification(session: AsyncSession, settings: Settings, user: User) -> None:
    _, token = await one_time.issue(
        session,
        Purpose.verify_email,
        organization_id=user.organization_id,
        email=user.email,
        user_id=user.id,
        ttl=timedelta(hours=settings.email_verification_hours),
    )
    subject, body = verification_email(
        full_name=user.full_name,
        link=link(settings, "verify-email", token),
        hours=settings.email_verification_hours,
    )
    await enqueue_email(
        session, to=user.email, subject=subject, body=body, organization_id=user.organization_id
    )


async def current_organization(session: AsyncSession, principal: Principal) -> Organization:
    organization = await session.get(Organization, principal.organization_id)
    if organization is None:  # pragma: no cover - the principal's organization always exists
        raise NotFound("Organization not found")
    return organization


async def get_user(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> User:
    return await owned(session, principal, User, user_id, "User")


# The fields of UserOut, read as plain columns by the API's reads of one user.
_USER_OUT = owned_columns(
    User,
    "User",
    User.id,
    User.email,
    User.full_name,
    User.role,
    User.organization_id,
    User.is_active,
    User.created_at,
)


async def get_user_row(
    connection: ReadConnection, principal: Principal, user_id: uuid.UUID
) -> ColumnsRow:
    """`get_user` as a row of the fields UserOut shows (the same 404 for another
    organization's user)."""
    return await owned_row(connection, principal, _USER_OUT, user_id)


def may_give(principal: Principal, role: Role) -> None:
    """403 unless the principal holds every scope `role` grants: a narrowed token or a key
    with users:admin cannot make a user who can do more than it can."""
    beyond = sorted(scope.value for scope in scopes_for(role) - principal.scopes)
    if beyond:
        raise Forbidden(
            f"Cannot give the role {role.value}: it grants scopes you do not have: "
            + ", ".join(beyond)
        )


async def create_user(session: AsyncSession, principal: Principal, data: UserCreateIn) -> User:
    may_give(principal, data.role)
    organization = await current_organization(session, principal)
    return await add_user(
        session,
        organization,
        email=data.email,
        password=data.password,
        full_name=data.full_name,
        role=data.role,
    )


async def list_users(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[Sequence[User], int]:
    query = (
        select(User)
        .where(User.organization_id == principal.organization_id)
        .order_by(User.created_at, User.id)
    )
    return await paginate(session, query, params)


async def _ensure_another_active_admin(session: AsyncSession, user: User) -> None:
    """409 unless another active admin remains. Changes that may remove an admin are
    serialised per organization (its row locked on PostgreSQL; SQLite's transactions hold
    the write lock from their start), so two admins removing each other at once cannot both
    count the other as the one who remains."""
    await session.execute(
        select(Organization.id).where(Organization.id == user.organization_id).with_for_update()
    )
    others = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(
            User.organization_id == user.organization_id,
            User.role == Role.admin.value,
            User.is_active.is_(True),
            User.id != user.id,
        )
    )
    if not others:
        raise Conflict(LAST_ADMIN)


async def update_user(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, body: UserUpdateIn
) -> User:
    user = await get_user(session, principal, user_id)
    changes = body.changes()
    if "role" in changes:
        may_give(principal, changes["role"])
    loses_admin = user.role == Role.admin.value and user.is_active
    demoted = changes.get("role", Role.admin) is not Role.admin
    deactivated = changes.get("is_active") is False
    if loses_admin and (demoted or deactivated):
        await _ensure_another_active_admin(session, user)
    if deactivated and user.is_active:
        await revoke_all_logins(session, user.id, "deactivated")
        await revoke_keys_of(session, user.id)
    events = []
    if "role" in changes and changes["role"].value != user.role:
        role_change = {"from": user.role, "to": changes["role"].value}
        events.append((AuditAction.user_role_changed, role_change))
    if "is_active" in changes and changes["is_active"] is not user.is_active:
        status_change = {"is_active": changes["is_active"]}
        events.append((AuditAction.user_status_changed, status_change))
    for field, value in changes.items():
        setattr(user, field, value.value if isinstance(value, Role) else value)
    await session.flush()
    for action, details in events:
        await audit.record(
            session,
            action,
            organization_id=user.organization_id,
            actor=principal,
            target=("user", user.id),
            details=details,
        )
    return user


async def deactivate_user(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> None:
    await update_user(session, principal, user_id, UserUpdateIn(is_active=False))
