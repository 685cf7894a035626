"""Projects CRUD: slug unique per organization, scopes, and tenant isolation."""

import uuid

import httpx
import pytest

from tandem.identity.models import User
from tests.conftest import LoginAs
from tests.factories import ProjectFactory, make_user

pytestmark = pytest.mark.anyio


async def test_create_get_list_update_delete(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    created = await client.post(
        "/api/v1/projects", json={"name": "Spring Launch!", "description": "Q2"}, headers=headers
    )
    assert created.status_code == 201, created.text
    project = created.json()
    assert set(project) == {
        "id",
        "name",
        "slug",
        "description",
        "owner_id",
        "organization_id",
        "created_at",
    }
    assert (project["name"], project["slug"], project["description"]) == (
        "Spring Launch!",
        "spring-launch",
        "Q2",
    )
    assert (project["owner_id"], project["organization_id"]) == (
        str(member.id),
        str(member.organization_id),
    )
    url = f"/api/v1/projects/{project['id']}"
    assert (await client.get(url, headers=headers)).json() == project
    listed = (await client.get("/api/v1/projects", headers=headers)).json()
    assert listed == {"items": [project], "count": 1}

    patched = await client.patch(url, json={"description": None}, headers=headers)
    assert patched.json()["description"] is None
    assert patched.json()["name"] == "Spring Launch!"
    renamed = await client.patch(url, json={"name": "Summer"}, headers=headers)
    assert (renamed.json()["name"], renamed.json()["slug"]) == ("Summer", "summer")

    assert (await client.delete(url, headers=headers)).status_code == 204
    gone = await client.get(url, headers=headers)
    assert gone.status_code == 404, gone.text
    assert gone.json() == {"detail": f"Project {project['id']} not found"}


async def test_slug_is_unique_per_organization(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    await client.post("/api/v1/projects", json={"name": "Launch"}, headers=headers)
    duplicate = await client.post("/api/v1/projects", json={"name": "launch"}, headers=headers)
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json() == {
        "detail": "A project with the slug 'launch' already exists in this organization"
    }
    elsewhere = await client.post(
        "/api/v1/projects", json={"name": "Launch"}, headers=await login_as(await make_user())
    )
    assert elsewhere.status_code == 201, elsewhere.text
    assert elsewhere.json()["slug"] == "launch"


async def test_renaming_onto_a_taken_slug_is_409(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    await client.post("/api/v1/projects", json={"name": "Alpha"}, headers=headers)
    beta = (await client.post("/api/v1/projects", json={"name": "Beta"}, headers=headers)).json()
    response = await client.patch(
        f"/api/v1/projects/{beta['id']}", json={"name": "ALPHA"}, headers=headers
    )
    assert response.status_code == 409, response.text
    assert response.json() == {
        "detail": "A project with the slug 'alpha' already exists in this organization"
    }
    still = await client.get(f"/api/v1/projects/{beta['id']}", headers=headers)
    assert still.json()["name"] == "Beta"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"name": "!!!"}, "at least one letter or digit", id="no-slug"),
        pytest.param({"name": ""}, "at least 1 character", id="empty"),
        pytest.param({}, "Field required", id="missing"),
    ],
)
async def test_invalid_project_is_422(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, body: dict[str, str], message: str
) -> None:
    response = await client.post("/api/v1/projects", json=body, headers=await login_as(member))
    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])


async def test_read_only_token_cannot_write(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member, {"projects:read"})
    assert (await client.get("/api/v1/projects", headers=headers)).status_code == 200
    response = await client.post("/api/v1/projects", json={"name": "X"}, headers=headers)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Missing required scope: projects:write"}


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_another_organizations_project_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, method: str
) -> None:
    owner = await make_user()
    project = await ProjectFactory.create_async(
        organization_id=owner.organization_id, owner_id=owner.id
    )
    kwargs = {"json": {"name": "Taken over"}} if method == "PATCH" else {}
    response = await client.request(
        method, f"/api/v1/projects/{project.id}", headers=await login_as(member), **kwargs
    )
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"Project {project.id} not found"}
    owner_view = await client.get(f"/api/v1/projects/{project.id}", headers=await login_as(owner))
    assert owner_view.json()["name"] == project.name
    listed = await client.get("/api/v1/projects", headers=await login_as(member))
    assert listed.json() == {"items": [], "count": 0}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("limit=0", "limit", id="limit-zero"),
        pytest.param("limit=201", "limit", id="limit-too-big"),
        pytest.param("offset=-1", "offset", id="negative-offset"),
        pytest.param(f"offset={2**63}", "offset", id="offset-beyond-the-database"),
    ],
)
async def test_pagination_bounds(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, query: str, field: str
) -> None:
    response = await client.get(f"/api/v1/projects?{query}", headers=await login_as(member))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", field]


async def test_malformed_id_is_422(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    response = await client.get("/api/v1/projects/not-a-uuid", headers=await login_as(member))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "project_id"]
    unknown = uuid.uuid4()
    missing = await client.get(f"/api/v1/projects/{unknown}", headers=await login_as(member))
    assert missing.status_code == 404, missing.text
    assert missing.json() == {"detail": f"Project {unknown} not found"}
