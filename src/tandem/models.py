"""Every model, imported in one place so that `Base.metadata` is complete (Alembic, tests)."""

from tandem.agents.models import AgentRun
from tandem.audit.models import AuditEvent
from tandem.content.models import ContentItem
from tandem.db import Base
from tandem.identity.models import (
    ApiKey,
    LoginSession,
    OneTimeToken,
    Organization,
    Project,
    RefreshToken,
    User,
)
from tandem.jobs.models import Job, JobAttempt
from tandem.notifications.models import OutboxMessage
from tandem.notifications.recipients import ReviewRecipient
from tandem.review.models import ReviewDecision, ReviewRevision, ReviewThread
from tandem.scheduling.models import Absence, Assignment, Block, Person, Rotation, Schedule, Swap
from tandem.webhooks.models import WebhookDelivery, WebhookSubscription

__all__ = [
    "Absence",
    "AgentRun",
    "ApiKey",
    "Assignment",
    "AuditEvent",
    "Base",
    "Block",
    "ContentItem",
    "Job",
    "JobAttempt",
    "LoginSession",
    "OneTimeToken",
    "Organization",
    "OutboxMessage",
    "Person",
    "Project",
    "RefreshToken",
    "ReviewDecision",
    "ReviewRecipient",
    "ReviewRevision",
    "ReviewThread",
    "Rotation",
    "Schedule",
    "Swap",
    "User",
    "WebhookDelivery",
    "WebhookSubscription",
]
