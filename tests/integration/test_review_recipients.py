"""Who gets an organization's review digests: `GET|PUT /api/v1/organizations/current/
review-recipients` (users:admin). The digests themselves: test_review_digest.py."""

import uuid
from typing import Any

import httpx
import pytest

from tandem.identity.models import User
from tandem.identity.scopes import Role
from tests.conftest import LoginAs
from tests.factories import make_user

pytestmark = pytest.mark.anyio

URL = "/api/v1/organizations/current/review-recipients"


@pytest.fixture
async def admin() -> User:
    return await make_user(Role.admin, email="admin@example.com")


async def emails(response: httpx.Response) -> list[str]:
    return [user["email"] for user in response.json()["digest_to"]]


async def test_with_none_chosen_everyone_who_may_decide_gets_the_digest(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    org = admin.organization_id
    await make_user(Role.reviewer, org, email="rev@example.com")
    await make_user(Role.coordinator, org, email="coord@example.com")
    await make_user(Role.member, org, email="mem@example.com")
    await make_user(Role.reviewer, org, email="gone@example.com", is_active=False)
    await make_user(Role.reviewer, email="elsewhere@example.com")
    response = await client.get(URL, headers=await login_as(admin))
    assert response.status_code == 200, response.text
    assert response.json()["user_ids"] == []
    assert await emails(response) == ["admin@example.com", "coord@example.com", "rev@example.com"]


async def test_a_chosen_list_replaces_everyone_and_empty_restores_it(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    headers = await login_as(admin)
    reviewer = await make_user(Role.reviewer, admin.organization_id, email="rev@example.com")
    coordinator = await make_user(
        Role.coordinator, admin.organization_id, email="coord@example.com"
    )
    chosen = [str(reviewer.id), str(coordinator.id), str(reviewer.id)]
    put = await client.put(URL, json={"user_ids": chosen}, headers=headers)
    assert put.status_code == 200, put.text
    assert put.json()["user_ids"] == [str(coordinator.id), str(reviewer.id)]  # by e-mail
    assert await emails(put) == ["coord@example.com", "rev@example.com"]
    assert (await client.get(URL, headers=headers)).json() == put.json()

    cleared = await client.put(URL, json={"user_ids": []}, headers=headers)
    assert cleared.json()["user_ids"] == []
    assert await emails(cleared) == ["admin@example.com", "coord@example.com", "rev@example.com"]


async def test_a_chosen_recipient_who_can_no_longer_decide_is_skipped(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    headers = await login_as(admin)
    reviewer = await make_user(Role.reviewer, admin.organization_id, email="rev@example.com")
    other = await make_user(Role.reviewer, admin.organization_id, email="other@example.com")
    ids = [str(reviewer.id), str(other.id)]
    await client.put(URL, json={"user_ids": ids}, headers=headers)
    demoted = await client.patch(
        f"/api/v1/users/{reviewer.id}", json={"role": "member"}, headers=headers
    )
    assert demoted.status_code == 200, demoted.text
    assert await emails(await client.get(URL, headers=headers)) == ["other@example.com"]
    # Nobody chosen can decide any more: everyone who may decide is told instead.
    await client.delete(f"/api/v1/users/{other.id}", headers=headers)
    assert await emails(await client.get(URL, headers=headers)) == ["admin@example.com"]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        pytest.param("member", "may not decide reviews (role member)", id="no-review-write"),
        pytest.param("inactive", "is deactivated", id="deactivated"),
        pytest.param("other-organization", "No user", id="other-organization"),
        pytest.param("unknown", "No user", id="unknown"),
    ],
)
async def test_a_recipient_who_cannot_decide_here_is_422_and_changes_nothing(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, kind: str, message: str
) -> None:
    headers = await login_as(admin)
    org = admin.organization_id
    reviewer = await make_user(Role.reviewer, org, email="rev@example.com")
    await client.put(URL, json={"user_ids": [str(reviewer.id)]}, headers=headers)
    refused: dict[str, Any] = {
        "member": lambda: make_user(Role.member, org, email="mem@example.com"),
        "inactive": lambda: make_user(Role.reviewer, org, is_active=False),
        "other-organization": lambda: make_user(Role.reviewer),
    }
    user_id = (await refused[kind]()).id if kind in refused else uuid.uuid4()
    response = await client.put(
        URL, json={"user_ids": [str(reviewer.id), str(user_id)]}, headers=headers
    )
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert message in error["msg"]
    assert error["loc"] == ["body", "user_ids", 1]
    assert (await client.get(URL, headers=headers)).json()["user_ids"] == [str(reviewer.id)]


async def test_choosing_recipients_needs_users_admin(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    coordinator = await make_user(Role.coordinator, admin.organization_id)
    headers = await login_as(coordinator)
    for response in (
        await client.get(URL, headers=headers),
        await client.put(URL, json={"user_ids": []}, headers=headers),
    ):
        assert response.status_code == 403, response.text
        assert "users:admin" in response.json()["detail"]
