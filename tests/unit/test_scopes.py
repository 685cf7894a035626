"""The role-to-scope map of API.md, and narrowing a token to the scopes asked for."""

import pytest

from tandem.identity.scopes import ROLE_SCOPES, Role, Scope, narrow, scopes_for

MEMBER = {
    "agent:read",
    "agent:run",
    "jobs:read",
    "jobs:write",
    "review:read",
    "projects:read",
    "projects:write",
    "schedule:read",
}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        pytest.param(Role.member, MEMBER, id="member"),
        pytest.param(Role.reviewer, MEMBER | {"review:write"}, id="reviewer"),
        pytest.param(
            Role.coordinator, MEMBER | {"review:write", "schedule:write"}, id="coordinator"
        ),
        pytest.param(
            Role.admin,
            MEMBER
            | {
                "review:write",
                "schedule:write",
                "schedule:admin",
                "agent:admin",
                "users:admin",
                "jobs:admin",
                "webhooks:admin",
            },
            id="admin",
        ),
    ],
)
def test_role_grants_exactly_the_scopes_of_api_md(role: Role, expected: set[str]) -> None:
    assert {scope.value for scope in scopes_for(role)} == expected


def test_admin_holds_every_scope_there_is() -> None:
    assert ROLE_SCOPES[Role.admin] == frozenset(Scope)
    assert len(Scope) == 15


@pytest.mark.parametrize(
    ("scope", "lowest_role"),
    [
        pytest.param(Scope.agent_run, Role.member, id="agent-run"),
        pytest.param(Scope.review_write, Role.reviewer, id="review-write"),
        pytest.param(Scope.schedule_write, Role.coordinator, id="schedule-write"),
        pytest.param(Scope.schedule_admin, Role.admin, id="schedule-admin"),
        pytest.param(Scope.users_admin, Role.admin, id="users-admin"),
        pytest.param(Scope.webhooks_admin, Role.admin, id="webhooks-admin"),
    ],
)
def test_each_role_includes_the_one_below(scope: Scope, lowest_role: Role) -> None:
    ordered = [Role.member, Role.reviewer, Role.coordinator, Role.admin]
    holders = [role for role in ordered if scope in scopes_for(role)]
    assert holders == ordered[ordered.index(lowest_role) :]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        pytest.param(None, MEMBER, id="nothing-asked-means-everything-granted"),
        pytest.param(set(), MEMBER, id="empty-means-everything-granted"),
        pytest.param({"agent:run"}, {"agent:run"}, id="subset"),
        pytest.param({"agent:run", "users:admin"}, {"agent:run"}, id="beyond-role-dropped"),
        pytest.param({"no:such-scope"}, set(), id="unknown-dropped"),
    ],
)
def test_narrow_never_exceeds_the_role(requested: set[str] | None, expected: set[str]) -> None:
    narrowed = narrow(scopes_for(Role.member), requested)
    assert {scope.value for scope in narrowed} == expected
