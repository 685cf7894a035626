"""Scheduling over real HTTP: a `tandem serve` process (SQLite, embedded executor, defaults)
generates a schedule with CP-SAT, a swap goes through the review queue, the schedule is
deleted with its assignments."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, wait_until_serving

pytestmark = pytest.mark.anyio

StartServer = Callable[..., ServerProcess]
WaitUntil = Callable[..., Awaitable[Any]]
HTTP_TIMEOUT = 30.0


async def test_a_schedule_is_generated_swapped_and_deleted(
    start_server: StartServer, wait_until: WaitUntil
) -> None:
    server = start_server()
    await wait_until_serving(server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as client:
        register = await client.post(
            "/api/v1/auth/register",
            json={
                "email": "chief@example.com",
                "password": "a long enough password",
                "full_name": "C",
            },
        )
        headers = {"Authorization": f"Bearer {register.json()['access_token']}"}

        async def post(url: str, body: dict[str, Any], expected: int = 201) -> dict[str, Any]:
            response = await client.post(url, json=body, headers=headers)
            assert response.status_code == expected, response.text
            return dict(response.json())

        residents = [
            await post(
                "/api/v1/people",
                {"name": name, "email": f"{name}@example.com", "type": "resident", "pgy_level": 2},
            )
            for name in ("ada", "bob", "cyd")
        ]
        await post("/api/v1/people", {"name": "fay", "email": "fay@example.com", "type": "faculty"})
        await post(
            "/api/v1/rotations",
            {"name": "Clinic", "kind": "clinic", "min_residents": 1, "max_residents": 1},
        )
        span = {"start_date": "2027-03-01", "end_date": "2027-03-02"}
        assert await post("/api/v1/blocks/generate", span) == {"created": 4}
        schedule = await post("/api/v1/schedules", {"name": "March"} | span)
        accepted = await post(f"/api/v1/schedules/{schedule['id']}/generate", {}, expected=202)

        async def finished() -> dict[str, Any] | None:
            body = (await client.get(f"/api/v1/schedules/{schedule['id']}", headers=headers)).json()
            return body if body["status"] in {"generated", "failed"} else None

        generated = await wait_until(finished, timeout=60)
        assert generated["status"] == "generated", generated["error"]
        assert generated["job_id"] == accepted["job_id"]
        validation = (
            await client.get(f"/api/v1/schedules/{schedule['id']}/validation", headers=headers)
        ).json()
        assert validation["valid"] is True

        url = f"/api/v1/schedules/{schedule['id']}/assignments"
        assignments = (await client.get(url, headers=headers)).json()["items"]
        primary = next(a for a in assignments if a["role"] == "primary")
        busy = {a["person_id"] for a in assignments if a["block_id"] == primary["block_id"]}
        free = next(r for r in residents if r["id"] not in busy)
        swap = await post(
            "/api/v1/swaps",
            {"assignment_id": primary["id"], "to_person_id": free["id"], "reason": "Exam"},
        )
        assert swap["status"] == "pending"
        pending = (await client.get("/api/hitl/pending", headers=headers)).json()
        assert [(i["thread_id"], i["kind"]) for i in pending["items"]] == [
            (swap["thread_id"], "swap")
        ]
        approved = await post(
            "/api/hitl/resume", {"thread_id": swap["thread_id"], "decision": "approve"}, 200
        )
        assert "approved" in approved["message"]
        after = (await client.get(url, params={"person_id": free["id"]}, headers=headers)).json()
        assert primary["id"] in {a["id"] for a in after["items"]}

        deleted = await client.delete(f"/api/v1/schedules/{schedule['id']}", headers=headers)
        assert deleted.status_code == 204, deleted.text
        gone = await client.get(url, headers=headers)
        assert gone.status_code == 404, gone.text
        assert gone.json() == {"detail": f"Schedule {schedule['id']} not found"}
