"""The content pipeline over real HTTP: a `tandem serve` process with no settings (SQLite,
embedded executor, the offline model). A reviewer creates drafts, sends them back once with
feedback, approves the second revision, and finds the posts published."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, wait_until_serving

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"
HTTP_TIMEOUT = 30.0
StartServer = Callable[..., ServerProcess]
WaitUntil = Callable[..., Awaitable[Any]]


async def test_create_edit_approve_publish(
    start_server: StartServer, wait_until: WaitUntil
) -> None:
    server = start_server()
    await wait_until_serving(server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as client:
        registered = await client.post(
            "/api/v1/auth/register",
            json={"email": "editor@example.com", "password": PASSWORD, "full_name": "Ed Itor"},
        )
        assert registered.status_code == 201, registered.text
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}

        async def thread_in(thread_id: str, status: str, revision: int) -> dict[str, Any] | None:
            response = await client.get(f"/api/hitl/{thread_id}", headers=headers)
            thread: dict[str, Any] = response.json()
            assert thread["status"] != "failed", thread
            return thread if (thread["status"], thread["revision"]) == (status, revision) else None

        created = await client.post(
            "/api/content/create",
            json={
                "topics": ["remote work", "team rituals"],
                "platform": "linkedin",
                "count": 2,
                "tone": "professional",
                "brief": "Weekly demos keep a remote team honest about progress.",
            },
            headers=headers,
        )
        assert created.status_code == 202, created.text
        accepted = created.json()
        assert (accepted["status"], accepted["request_type"]) == ("generating", "text")
        thread_id = accepted["thread_id"]

        first = await wait_until(lambda: thread_in(thread_id, "pending_review", 1), timeout=30)
        assert len(first["drafts"]) == 2
        assert all(draft.strip() for draft in first["drafts"])
        pending = (await client.get("/api/hitl/pending", headers=headers)).json()
        assert [(i["thread_id"], i["content_count"]) for i in pending["items"]] == [(thread_id, 2)]

        edited = await client.post(
            "/api/hitl/resume",
            json={"thread_id": thread_id, "decision": "edit", "feedback": "Mention async updates"},
            headers=headers,
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["status"] == "regenerating"

        second = await wait_until(lambda: thread_in(thread_id, "pending_review", 2), timeout=30)
        assert second["edit_count"] == 1
        assert len(second["drafts"]) == 2
        assert [f["feedback"] for f in second["feedback"]] == ["Mention async updates"]
        assert [r["revision"] for r in second["revisions"]] == [1, 2]

        approved = await client.post(
            "/api/hitl/resume",
            json={"thread_id": thread_id, "decision": "approve"},
            headers=headers,
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "published"
        assert "approved" in approved.json()["message"]
        assert approved.json()["final_content"] == second["drafts"]

        again = await client.post(
            "/api/hitl/resume",
            json={"thread_id": thread_id, "decision": "reject", "feedback": "Too late"},
            headers=headers,
        )
        assert again.status_code == 409, again.text
        assert again.json() == {
            "detail": f"Thread {thread_id} is published, not pending_review: "
            "it takes no decision now"
        }

        published = (await client.get("/api/content?status=published", headers=headers)).json()
        assert published["count"] == 2
        assert sorted(item["body"] for item in published["items"]) == sorted(second["drafts"])
        assert {(item["thread_id"], item["revision"]) for item in published["items"]} == {
            (thread_id, 2)
        }
        assert (await client.get("/api/hitl/pending", headers=headers)).json()["count"] == 0
