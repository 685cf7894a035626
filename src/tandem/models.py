"""Every model, imported in one place so that `Base.metadata` is complete (Alembic, tests)."""

from tandem.agents.models import AgentRun
from tandem.db import Base
from tandem.identity.models import (
    ApiKey,
    LoginSession,
    Organization,
    Project,
    RefreshToken,
    User,
)
from tandem.jobs.models import Job, JobAttempt
from tandem.notifications.models import OutboxMessage

__all__ = [
    "AgentRun",
    "ApiKey",
    "Base",
    "Job",
    "JobAttempt",
    "LoginSession",
    "Organization",
    "OutboxMessage",
    "Project",
    "RefreshToken",
    "User",
]
