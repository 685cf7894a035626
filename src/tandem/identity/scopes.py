"""Scopes and the roles that grant them (API.md, "Authentication and scopes")."""

from enum import StrEnum


class Scope(StrEnum):
    agent_read = "agent:read"
    agent_run = "agent:run"
    agent_admin = "agent:admin"
    jobs_read = "jobs:read"
    jobs_write = "jobs:write"
    jobs_admin = "jobs:admin"  # retry or cancel other users' jobs
    review_read = "review:read"
    review_write = "review:write"
    projects_read = "projects:read"
    projects_write = "projects:write"
    schedule_read = "schedule:read"
    schedule_write = "schedule:write"
    schedule_admin = "schedule:admin"
    users_admin = "users:admin"
    webhooks_admin = "webhooks:admin"


class Role(StrEnum):
    member = "member"
    reviewer = "reviewer"
    coordinator = "coordinator"
    admin = "admin"


_MEMBER = frozenset(
    {
        Scope.agent_read,
        Scope.agent_run,
        Scope.jobs_read,
        Scope.jobs_write,
        Scope.review_read,
        Scope.projects_read,
        Scope.projects_write,
        Scope.schedule_read,
    }
)
_REVIEWER = _MEMBER | {Scope.review_write}
_COORDINATOR = _REVIEWER | {Scope.schedule_write}

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.member: _MEMBER,
    Role.reviewer: _REVIEWER,
    Role.coordinator: _COORDINATOR,
    Role.admin: frozenset(Scope),
}


def scopes_for(role: Role) -> frozenset[Scope]:
    return ROLE_SCOPES[role]


def narrow(granted: frozenset[Scope], requested: set[str] | None) -> frozenset[Scope]:
    """The scopes of a token asked for with `requested`: never more than the role grants.

    Names the role does not grant (or that do not exist) are dropped, as OAuth2 allows.
    """
    if not requested:
        return granted
    return frozenset(scope for scope in granted if scope.value in requested)
