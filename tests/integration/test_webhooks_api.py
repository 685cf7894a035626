"""/api/v1/webhooks: admins only (webhooks:admin), per organization, the secret shown once."""

from typing import Any

import httpx
import pytest

from tandem.identity.scopes import Role
from tests.conftest import LoginAs
from tests.factories import make_user

pytestmark = pytest.mark.anyio

BODY = {"url": "https://hooks.example.com/tandem", "events": ["review.pending", "job.dead"]}


async def admin_headers(login_as: LoginAs, organization_id: Any = None) -> dict[str, str]:
    return await login_as(await make_user(Role.admin, organization_id))


async def test_an_admin_creates_reads_updates_and_deletes_a_webhook(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    headers = await admin_headers(login_as)
    created = await client.post("/api/v1/webhooks", json=BODY, headers=headers)
    assert created.status_code == 201, created.text
    webhook = created.json()
    assert set(webhook) == {
        "id", "url", "events", "description", "secret", "is_active", "created_at",
    }  # fmt: skip
    assert webhook["secret"].startswith("whsec_")
    assert (webhook["url"], webhook["events"], webhook["is_active"]) == (
        BODY["url"],
        BODY["events"],
        True,
    )
    path = f"/api/v1/webhooks/{webhook['id']}"
    read = (await client.get(path, headers=headers)).json()
    assert "secret" not in read
    assert read["id"] == webhook["id"]
    listed = (await client.get("/api/v1/webhooks", headers=headers)).json()
    assert (listed["count"], [w["id"] for w in listed["items"]]) == (1, [webhook["id"]])

    patched = await client.patch(
        path, json={"events": ["swap.requested"], "is_active": False}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["events"], patched.json()["is_active"]) == (["swap.requested"], False)
    assert patched.json()["url"] == BODY["url"]

    assert (await client.delete(path, headers=headers)).status_code == 204
    gone = await client.get(path, headers=headers)
    assert (gone.status_code, gone.json()) == (
        404,
        {"detail": f"Webhook {webhook['id']} not found"},
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(BODY | {"events": ["job.exploded"]}, "events", id="unknown-event"),
        pytest.param(BODY | {"events": []}, "events", id="no-event"),
        pytest.param(BODY | {"url": "ftp://example.com/x"}, "url", id="not-http"),
        pytest.param(BODY | {"secret": "mine"}, "secret", id="unknown-field"),
    ],
)
async def test_invalid_bodies_are_422(
    client: httpx.AsyncClient, login_as: LoginAs, body: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/api/v1/webhooks", json=body, headers=await admin_headers(login_as)
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", field]


@pytest.mark.parametrize("role", [Role.member, Role.reviewer, Role.coordinator])
async def test_only_admins_manage_webhooks(
    client: httpx.AsyncClient, login_as: LoginAs, role: Role
) -> None:
    headers = await login_as(await make_user(role))
    response = await client.post("/api/v1/webhooks", json=BODY, headers=headers)
    assert response.status_code == 403, response.text
    assert "webhooks:admin" in response.json()["detail"]


async def test_another_organizations_webhook_is_not_found(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    ours = await admin_headers(login_as)
    theirs = await admin_headers(login_as)
    webhook = (await client.post("/api/v1/webhooks", json=BODY, headers=theirs)).json()
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", "/test")]:
        response = await client.request(
            method, f"/api/v1/webhooks/{webhook['id']}{suffix}", headers=ours
        )
        assert response.status_code == 404, (method, suffix)
        assert response.json() == {"detail": f"Webhook {webhook['id']} not found"}
    assert (await client.get("/api/v1/webhooks", headers=ours)).json() == {"items": [], "count": 0}
