"""Accounts made or mended through a link mailed to their address: invitations, address
verification and password reset. Each link is a single-use, expiring token (one_time)."""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit import service as audit
from tandem.audit.service import Actor, AuditAction
from tandem.errors import Invalid
from tandem.identity import one_time
from tandem.identity.emails import invitation_email, password_reset_email
from tandem.identity.logins import revoke_all_logins
from tandem.identity.models import OneTimeToken, Organization, User
from tandem.identity.one_time import INVALID_LINK, Purpose
from tandem.identity.principal import Principal
from tandem.identity.scopes import Role
from tandem.identity.security import hash_password
from tandem.identity.service import add_user, ensure_email_free, link, may_give
from tandem.notifications.service import enqueue_email
from tandem.settings import Settings


async def invite(
    session: AsyncSession, settings: Settings, principal: Principal, *, email: str, role: Role
) -> OneTimeToken:
    """Mails `email` a link to join the principal's organization with `role`; 409 when the
    address already has an account there, 403 for a role beyond the principal's scopes."""
    may_give(principal, role)
    email = email.lower()
    await ensure_email_free(session, principal.organization_id, email)
    invitation, token = await one_time.issue(
        session,
        Purpose.invitation,
        organization_id=principal.organization_id,
        email=email,
        role=role.value,
        created_by_id=principal.user_id,
        ttl=timedelta(hours=settings.invitation_hours),
    )
    subject, body = invitation_email(
        link=link(settings, "accept-invite", token), hours=settings.invitation_hours
    )
    await enqueue_email(
        session, to=email, subject=subject, body=body, organization_id=principal.organization_id
    )
    await audit.record(
        session,
        AuditAction.invitation_created,
        organization_id=principal.organization_id,
        actor=principal,
        target=("invitation", invitation.id),
        details={"role": role.value},
    )
    return invitation


async def accept_invitation(
    session: AsyncSession, *, token: str, password: str, full_name: str
) -> User:
    """The invited account, created with the password its owner chose (the address is
    verified: the link reached it)."""
    invitation = await one_time.use(session, Purpose.invitation, token)
    organization = await session.get_one(Organization, invitation.organization_id)
    user = await add_user(
        session,
        organization,
        email=invitation.email,
        password=password,
        full_name=full_name,
        role=Role(invitation.role or Role.member.value),
        welcome=False,
    )
    await audit.record(
        session,
        AuditAction.invitation_accepted,
        organization_id=organization.id,
        actor=Actor(user.id),
        target=("user", user.id),
        details={"invitation_id": str(invitation.id)},
    )
    return user


async def verify_email(session: AsyncSession, *, token: str) -> User:
    used = await one_time.use(session, Purpose.verify_email, token)
    user = await session.get(User, used.user_id) if used.user_id else None
    if user is None or user.email != used.email:
        raise Invalid(INVALID_LINK, loc=("body", "token"))
    user.verification_pending = False
    await session.flush()
    await audit.record(
        session,
        AuditAction.email_verified,
        organization_id=user.organization_id,
        actor=Actor(user.id),
        target=("user", user.id),
    )
    return user


async def request_password_reset(session: AsyncSession, settings: Settings, *, email: str) -> None:
    """Mails a reset link to every active account with this address; says nothing of whether
    there is one (the caller answers the same either way)."""
    users = (
        await session.scalars(
            select(User).where(User.email == email.lower(), User.is_active.is_(True))
        )
    ).all()
    for user in users:
        _, token = await one_time.issue(
            session,
            Purpose.password_reset,
            organization_id=user.organization_id,
            email=user.email,
            user_id=user.id,
            ttl=timedelta(minutes=settings.password_reset_minutes),
        )
        subject, body = password_reset_email(
            link=link(settings, "reset", token), minutes=settings.password_reset_minutes
        )
        await enqueue_email(
            session, to=user.email, subject=subject, body=body, organization_id=user.organization_id
        )
        await audit.record(
            session,
            AuditAction.password_reset_requested,
            organization_id=user.organization_id,
            target=("user", user.id),
        )


async def reset_password(session: AsyncSession, *, token: str, password: str) -> None:
    """Sets the password and ends every login of the account (refresh tokens, access tokens
    and console sessions alike); other reset links of the account stop working."""
    used = await one_time.use(session, Purpose.password_reset, token)
    user = await session.get(User, used.user_id) if used.user_id else None
    if user is None or not user.is_active or user.email != used.email:
        raise Invalid(INVALID_LINK, loc=("body", "token"))
    user.password_hash = await hash_password(password)
    # Following the link proved the address, as verification would have.
    user.verification_pending = False
    await revoke_all_logins(session, user.id, "password_reset")
    await one_time.retire(session, Purpose.password_reset, user.id)
    await session.flush()
    await audit.record(
        session,
        AuditAction.password_reset,
        organization_id=user.organization_id,
        actor=Actor(user.id),
        target=("user", user.id),
    )
