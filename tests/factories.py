"""One factory per model, producing the minimum valid object; tests override what they test.

Factories persist through the test's session (bound by the `db_session` fixture) with
`flush`, so the rows live inside the test's rolled-back transaction:

    org = await OrganizationFactory.create_async(name="Acme")
"""

import uuid
from typing import Any, TypeVar

from polyfactory import Use
from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory, SQLAlchemyPersistenceMethod
from pwdlib import PasswordHash
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import utcnow
from tandem.identity.scopes import Role
from tandem.jobs.models import Job, JobStatus
from tandem.models import Organization, Project, User
from tandem.notifications.models import OutboxMessage, OutboxStatus

# Hashing with argon2 takes ~0.1 s, so every factory-made user shares one precomputed hash.
TEST_PASSWORD = "correct horse battery staple"
_TEST_PASSWORD_HASH = PasswordHash.recommended().hash(TEST_PASSWORD)

T = TypeVar("T")


class BaseFactory(SQLAlchemyFactory[T]):
    __is_base_factory__ = True
    __set_relationships__ = False
    __set_primary_key__ = False
    __check_model__ = False
    __persistence_method__ = SQLAlchemyPersistenceMethod.FLUSH

    created_at = Use(utcnow)
    updated_at = Use(utcnow)


def bind(session: AsyncSession | None) -> None:
    """Point every factory at the test's session (None unbinds)."""
    pending: list[type[BaseFactory[object]]] = [BaseFactory]
    while pending:
        factory = pending.pop()
        factory.__async_session__ = session
        pending.extend(factory.__subclasses__())


class OrganizationFactory(BaseFactory[Organization]):
    __model__ = Organization

    name = Use(lambda: f"Org {BaseFactory.__faker__.company()}")


class UserFactory(BaseFactory[User]):
    """Needs `organization_id`; `make_user` below creates the organization too."""

    __model__ = User

    email = Use(lambda: BaseFactory.__faker__.unique.email().lower())
    password_hash = Use(lambda: _TEST_PASSWORD_HASH)
    full_name = Use(lambda: BaseFactory.__faker__.name())
    role = Role.member.value
    is_active = True
    last_login_at = None


class ProjectFactory(BaseFactory[Project]):
    """Needs `organization_id` and `owner_id`."""

    __model__ = Project

    name = Use(lambda: f"Project {BaseFactory.__faker__.word()}")
    slug = Use(lambda: BaseFactory.__faker__.unique.slug())
    description = None


async def make_user(
    role: Role = Role.member, organization_id: uuid.UUID | None = None, **overrides: Any
) -> User:
    """A user (password `TEST_PASSWORD`) in the given organization, or in a new one."""
    if organization_id is None:
        organization_id = (await OrganizationFactory.create_async()).id
    return await UserFactory.create_async(
        organization_id=organization_id, role=role.value, **overrides
    )


class OutboxMessageFactory(BaseFactory[OutboxMessage]):
    """An e-mail waiting in the outbox, due now, for no organization."""

    __model__ = OutboxMessage

    organization_id = None
    recipient = Use(lambda: BaseFactory.__faker__.email())
    subject = Use(lambda: BaseFactory.__faker__.sentence())
    body = Use(lambda: BaseFactory.__faker__.paragraph())
    status = OutboxStatus.pending
    attempts = 0
    next_attempt_at = Use(utcnow)
    last_error = None
    sent_at = None
    dedupe_key = None


class JobFactory(BaseFactory[Job]):
    """An echo job, pending and due now; needs `organization_id` (or None for a system job)."""

    __model__ = Job

    submitted_by_id = None
    task = "echo"
    payload = Use(dict)
    status = JobStatus.pending
    attempts = 0
    runs = 0
    max_attempts = 3
    next_run_at = Use(utcnow)
    lease_owner = None
    lease_token = None
    lease_expires_at = None
    cancel_requested = False
    last_error = None
    result = None
    idempotency_key = None
    notify = False
    started_at = None
    finished_at = None
