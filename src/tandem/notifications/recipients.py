"""Who gets an organization's review digests: a list its admins choose, or (with none
chosen) every active user who may decide (review:write)."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ForeignKey, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, unique_or_conflict, utcnow
from tandem.errors import Invalid
from tandem.identity.models import User
from tandem.identity.principal import Principal
from tandem.identity.scopes import Role, Scope, scopes_for

DECIDERS = [role.value for role in Role if Scope.review_write in scopes_for(role)]
MAX_RECIPIENTS = 200


class ReviewRecipient(Base):
    """One chosen recipient of an organization's review digests."""

    __tablename__ = "review_recipients"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def chosen(session: AsyncSession, organization_id: uuid.UUID) -> list[uuid.UUID]:
    """The chosen recipients' ids (empty: none chosen), by their e-mail addresses."""
    rows = await session.scalars(
        select(ReviewRecipient.user_id)
        .join(User, User.id == ReviewRecipient.user_id)
        .where(ReviewRecipient.organization_id == organization_id)
        .order_by(User.email)
    )
    return list(rows.all())


async def choose(
    session: AsyncSession, principal: Principal, user_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Replaces the organization's list with `user_ids` (empty: everyone who may decide).
    Each must be an active user of the organization whose role holds review:write; the
    first one that is not is a 422 naming it."""
    wanted = list(dict.fromkeys(user_ids))
    found = await session.scalars(
        select(User).where(User.organization_id == principal.organization_id, User.id.in_(wanted))
    )
    users = {user.id: user for user in found.all()}
    for index, user_id in enumerate(wanted):
        loc = ("body", "user_ids", index)
        user = users.get(user_id)
        if user is None:  # another organization's user is just as unknown here
            raise Invalid(f"No user {user_id} in this organization", loc=loc)
        if not user.is_active:
            raise Invalid(f"{user.email} is deactivated: reactivate them first", loc=loc)
        if user.role not in DECIDERS:
            raise Invalid(
                f"{user.email} may not decide reviews (role {user.role}): "
                "give them a role with review:write first",
                loc=loc,
            )
    await session.execute(
        delete(ReviewRecipient).where(ReviewRecipient.organization_id == principal.organization_id)
    )
    now = utcnow()
    async with unique_or_conflict(session, "The recipients changed meanwhile; try again"):
        session.add_all(
            ReviewRecipient(
                organization_id=principal.organization_id, user_id=user_id, created_at=now
            )
            for user_id in wanted
        )
    return wanted


async def digest_recipients(session: AsyncSession, organization_id: uuid.UUID) -> list[User]:
    """Who gets the digest now: the chosen recipients who are still active and may still
    decide; everyone who may decide when none are chosen, or none of them still can (a
    digest nobody reads would leave the threads waiting unseen)."""
    deciders = (
        select(User)
        .where(
            User.organization_id == organization_id,
            User.is_active.is_(True),
            User.role.in_(DECIDERS),
        )
        .order_by(User.email)
    )
    chosen_ids = select(ReviewRecipient.user_id).where(
        ReviewRecipient.organization_id == organization_id
    )
    people = (await session.scalars(deciders.where(User.id.in_(chosen_ids)))).all()
    return list(people or (await session.scalars(deciders)).all())
