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
from tandem.review.models import ReviewRevision, ReviewThread
from tandem.review.states import ThreadStatus
from tandem.scheduling import models as scheduling
from tandem.scheduling.domain import AssignmentRole, PersonType, RotationKind, TimeOfDay

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
    verification_pending = False


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


# --- scheduling ---------------------------------------------------------------------------------
# Each needs `organization_id` (and the ids it refers to); the defaults are the minimum valid
# row: a PGY-1 resident, a clinic rotation needing no one, a draft schedule.


class PersonFactory(BaseFactory[scheduling.Person]):
    __model__ = scheduling.Person

    name = Use(lambda: BaseFactory.__faker__.name())
    email = Use(lambda: BaseFactory.__faker__.unique.email().lower())
    type = PersonType.RESIDENT
    pgy_level = 1
    specialty = None


class AbsenceFactory(BaseFactory[scheduling.Absence]):
    __model__ = scheduling.Absence

    kind = "leave"


class BlockFactory(BaseFactory[scheduling.Block]):
    __model__ = scheduling.Block

    time_of_day = TimeOfDay.AM


class RotationFactory(BaseFactory[scheduling.Rotation]):
    __model__ = scheduling.Rotation

    name = Use(lambda: f"Rotation {BaseFactory.__faker__.word()}")
    kind = RotationKind.CLINIC
    specialty = None
    min_residents = 0
    max_residents = 2
    requires_supervision = False
    hours_per_block = 6.0


class ScheduleFactory(BaseFactory[scheduling.Schedule]):
    __model__ = scheduling.Schedule

    name = Use(lambda: f"Schedule {BaseFactory.__faker__.word()}")
    status = scheduling.ScheduleStatus.draft
    statistics = None
    progress = None
    error = None
    job_id = None
    created_by_id = None


class AssignmentFactory(BaseFactory[scheduling.Assignment]):
    __model__ = scheduling.Assignment

    role = AssignmentRole.PRIMARY


class ReviewThreadFactory(BaseFactory[ReviewThread]):
    """A content thread waiting for review at revision 1 (add its drafts with
    `ReviewRevisionFactory`, or use `make_thread`); needs `organization_id`."""

    __model__ = ReviewThread

    project_id = None
    created_by_id = None
    job_id = None
    kind = "content"
    status = ThreadStatus.pending_review
    platform = "linkedin"
    revision = 1
    edit_count = 0
    payload = Use(lambda: {"topics": ["trams"], "platform": "linkedin", "count": 2})
    final_content = None
    error = None


class ReviewRevisionFactory(BaseFactory[ReviewRevision]):
    """Needs `thread_id`."""

    __model__ = ReviewRevision

    number = 1
    drafts = Use(lambda: ["First draft", "Second draft"])


async def make_thread(
    organization_id: uuid.UUID, drafts: list[Any] | None = None, **overrides: Any
) -> ReviewThread:
    """A thread and, unless it has no revision yet, its current revision's drafts."""
    thread = await ReviewThreadFactory.create_async(organization_id=organization_id, **overrides)
    if thread.revision > 0:
        await ReviewRevisionFactory.create_async(
            thread_id=thread.id,
            number=thread.revision,
            drafts=drafts if drafts is not None else ["First draft", "Second draft"],
        )
    return thread
