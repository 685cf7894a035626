"""Webhook deliveries with real jobs on the embedded executor, a database whose commits are
real, and a real receiver on 127.0.0.1 (TANDEM_WEBHOOK_ALLOW_PRIVATE on, as it must be for
loopback). Signatures are checked with `standardwebhooks`, an independent implementation."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tandem.app import create_app
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.integration.scheduling_setup import SchedulingApi
from tests.webhook_receiver import HANG, Receiver, webhook_receiver

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]


@dataclass
class Live:
    client: httpx.AsyncClient
    headers: dict[str, str]
    receiver: Receiver
    wait_until: WaitUntil

    async def subscribe(self, events: list[str]) -> dict[str, Any]:
        body = {"url": self.receiver.url, "events": events, "description": "ops channel"}
        response = await self.client.post("/api/v1/webhooks", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/api/v1/webhooks/{webhook_id}/deliveries", headers=self.headers
        )
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    async def delivery_ends(self, webhook_id: str, status: str) -> dict[str, Any]:
        async def ended() -> dict[str, Any] | None:
            items = await self.deliveries(webhook_id)
            return items[0] if items and items[0]["status"] == status else None

        found: dict[str, Any] = await self.wait_until(ended, timeout=20)
        return found


@asynccontextmanager
async def live_app(
    db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil, **overrides: Any
) -> AsyncIterator[Live]:
    values: dict[str, Any] = {
        "database_url": db.url,
        "data_dir": tmp_path,
        "job_retry_base_seconds": 0.01,
        "job_lease_seconds": 5,
        "job_poll_seconds": 0.05,
        "rate_limit_register": "1000/minute",
        "webhook_allow_private": True,
        "webhook_timeout_seconds": 0.5,
    }
    settings = Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]
    async with webhook_receiver() as receiver, running(create_app(settings)) as client:
        body = {"email": "owner@example.com", "password": "a long enough password"}
        registered = await client.post("/api/v1/auth/register", json=body | {"full_name": "O"})
        assert registered.status_code == 201, registered.text
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        yield Live(client, headers, receiver, wait_until)


@pytest.fixture
async def live(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> AsyncIterator[Live]:
    async with live_app(committed_db, tmp_path, wait_until) as app:
        yield app


def verified(secret: str, received: Any) -> dict[str, Any]:
    """The body, after `standardwebhooks` checked its signature (raises otherwise)."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


async def test_a_ping_is_signed_and_retried_after_a_500_and_a_timeout(live: Live) -> None:
    webhook = await live.subscribe(["job.dead"])
    live.receiver.answers = [500, HANG, 200]
    live.receiver.answer_body = b"x" * 10_000
    response = await live.client.post(
        f"/api/v1/webhooks/{webhook['id']}/test", headers=live.headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["event"] == "ping"
    assert response.json()["status"] == "pending"

    delivered = await live.delivery_ends(webhook["id"], "succeeded")
    assert delivered["attempts"] == 3
    assert delivered["status_code"] == 200
    assert delivered["error"] is None
    assert delivered["response_excerpt"] == "x" * 500  # never the whole answer
    assert len(live.receiver.received) == 3
    bodies = [verified(webhook["secret"], received) for received in live.receiver.received]
    assert {body["type"] for body in bodies} == {"ping"}
    assert bodies[0]["data"] == {"webhook_id": webhook["id"]}
    # One message, three attempts: the same id lets the receiver drop duplicates.
    assert len({r.headers["webhook-id"] for r in live.receiver.received}) == 1
    assert {r.path for r in live.receiver.received} == {"/hooks/tandem"}


async def test_a_wrong_secret_does_not_verify(live: Live) -> None:
    webhook = await live.subscribe(["job.dead"])
    await live.client.post(f"/api/v1/webhooks/{webhook['id']}/test", headers=live.headers)
    await live.delivery_ends(webhook["id"], "succeeded")
    other = "whsec_" + "A" * 43 + "="
    with pytest.raises(Exception, match="No matching signature found"):
        verified(other, live.receiver.received[0])


async def test_a_delivery_that_never_succeeds_is_failed_with_its_last_error(live: Live) -> None:
    webhook = await live.subscribe(["job.dead"])
    live.receiver.answers = [503] * 10
    await live.client.post(f"/api/v1/webhooks/{webhook['id']}/test", headers=live.headers)
    failed = await live.delivery_ends(webhook["id"], "failed")
    assert (failed["attempts"], failed["status_code"]) == (6, 503)
    assert failed["error"] == "Answered 503"
    assert len(live.receiver.received) == 6


async def test_a_job_succeeding_is_announced_once_and_deliveries_announce_nothing(
    live: Live,
) -> None:
    webhook = await live.subscribe(["job.succeeded", "job.dead"])
    submitted = await live.client.post(
        "/api/v1/jobs", json={"task": "echo", "payload": {"n": 1}}, headers=live.headers
    )
    job_id = submitted.json()["id"]
    await live.delivery_ends(webhook["id"], "succeeded")
    body = verified(webhook["secret"], live.receiver.received[0])
    assert body["type"] == "job.succeeded"
    assert body["data"] == {"job_id": job_id, "task": "echo", "status": "succeeded"}

    async def delivery_job_done() -> list[dict[str, Any]] | None:
        jobs = await live.client.get("/api/v1/jobs?task=webhook.deliver", headers=live.headers)
        items = jobs.json()["items"]
        return items if items and items[0]["status"] == "succeeded" else None

    await live.wait_until(delivery_job_done)
    all_jobs = await live.client.get("/api/v1/jobs", headers=live.headers)
    assert sorted(j["task"] for j in all_jobs.json()["items"]) == ["echo", "webhook.deliver"]


async def test_content_waiting_and_decided_are_announced(live: Live) -> None:
    webhook = await live.subscribe(["review.pending", "review.decided"])
    request = {"topics": ["trams"], "platform": "linkedin", "count": 1, "tone": "casual"}
    created = await live.client.post("/api/content/create", json=request, headers=live.headers)
    assert created.status_code == 202, created.text
    thread_id = created.json()["thread_id"]
    await live.wait_until(lambda: len(live.receiver.received) >= 1, timeout=20)
    pending = verified(webhook["secret"], live.receiver.received[0])
    assert pending["type"] == "review.pending"
    assert pending["data"] == {
        "thread_id": thread_id,
        "kind": "content",
        "revision": 1,
        "project_id": None,
    }
    decision = {"thread_id": thread_id, "decision": "reject", "feedback": ""}
    decided = await live.client.post("/api/hitl/resume", json=decision, headers=live.headers)
    assert decided.status_code == 200, decided.text
    await live.wait_until(lambda: len(live.receiver.received) >= 2, timeout=20)
    body = verified(webhook["secret"], live.receiver.received[1])
    assert body["type"] == "review.decided"
    assert body["data"] == {
        "thread_id": thread_id,
        "kind": "content",
        "revision": 1,
        "decision": "reject",
        "status": "rejected",
    }
    assert json.loads(live.receiver.received[1].body)["timestamp"]


async def test_loopback_is_refused_unless_allowed(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    async with live_app(committed_db, tmp_path, wait_until, webhook_allow_private=False) as live:
        webhook = await live.subscribe(["job.dead"])
        await live.client.post(f"/api/v1/webhooks/{webhook['id']}/test", headers=live.headers)
        failed = await live.delivery_ends(webhook["id"], "failed")
        assert failed["status_code"] is None
        assert failed["error"].startswith("Refused: 127.0.0.1 resolves to 127.0.0.1, a loopback")
        assert live.receiver.received == []


async def test_a_dead_job_is_announced(live: Live) -> None:
    webhook = await live.subscribe(["job.dead"])
    body = {"task": "echo", "payload": {"will_fail": True}, "max_attempts": 2}
    submitted = await live.client.post("/api/v1/jobs", json=body, headers=live.headers)
    assert submitted.status_code == 202, submitted.text
    await live.delivery_ends(webhook["id"], "succeeded")
    announced = verified(webhook["secret"], live.receiver.received[0])
    assert announced["type"] == "job.dead"
    assert announced["data"] == {
        "job_id": submitted.json()["id"],
        "task": "echo",
        "status": "dead",
    }


# --- scheduling events ------------------------------------------------------------------------
MONDAY = date(2027, 3, 1)


async def announced(live: Live, secret: str, count: int = 1) -> list[dict[str, Any]]:
    """The first `count` deliveries received, each verified with `standardwebhooks`."""
    await live.wait_until(lambda: len(live.receiver.received) >= count, timeout=60)
    return [verified(secret, received) for received in live.receiver.received[:count]]


async def test_a_generated_and_a_failed_schedule_are_announced(live: Live) -> None:
    webhook = await live.subscribe(["schedule.generated", "schedule.failed"])
    api = SchedulingApi(live.client, live.headers)
    await api.blocks(MONDAY, MONDAY)
    await api.rotation(name="Clinic", min_residents=1, max_residents=1)
    await api.person("resident", pgy_level=3)
    feasible = await api.schedule(MONDAY, MONDAY, name="Feasible")
    generate = f"/api/v1/schedules/{feasible['id']}/generate"
    assert (await live.client.post(generate, headers=live.headers)).status_code == 202
    (generated,) = await announced(live, webhook["secret"])
    assert generated["type"] == "schedule.generated"
    assert generated["data"] == {
        "schedule_id": feasible["id"],
        "status": "generated",
        "error": None,
    }

    # Two residents needed in every block, and only one exists.
    await api.rotation(name="Ward", min_residents=2, max_residents=2)
    infeasible = await api.schedule(MONDAY, MONDAY, name="Infeasible")
    generate = f"/api/v1/schedules/{infeasible['id']}/generate"
    assert (await live.client.post(generate, headers=live.headers)).status_code == 202
    failed = (await announced(live, webhook["secret"], count=2))[1]
    assert failed["type"] == "schedule.failed"
    assert failed["data"]["schedule_id"] == infeasible["id"]
    assert failed["data"]["status"] == "failed"
    stored = await live.client.get(f"/api/v1/schedules/{infeasible['id']}", headers=live.headers)
    assert failed["data"]["error"] == stored.json()["error"]
    assert failed["data"]["error"]


async def test_a_swap_request_is_announced(live: Live) -> None:
    webhook = await live.subscribe(["swap.requested"])
    api = SchedulingApi(live.client, live.headers)
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    clinic = await api.rotation(name="Clinic")
    ada = await api.person("resident", name="Ada", pgy_level=2)
    bob = await api.person("resident", name="Bob", pgy_level=2)
    assignment = await api.assigned(schedule, ada, blocks[0], clinic)
    asked = await live.client.post(
        "/api/v1/swaps",
        json={"assignment_id": assignment["id"], "to_person_id": bob["id"], "reason": "Exam"},
        headers=live.headers,
    )
    assert asked.status_code == 201, asked.text
    (body,) = await announced(live, webhook["secret"])
    assert body["type"] == "swap.requested"
    assert body["data"] == {
        "swap_id": asked.json()["id"],
        "assignment_id": assignment["id"],
        "from_person_id": ada["id"],
        "to_person_id": bob["id"],
        "thread_id": asked.json()["thread_id"],
    }


async def test_the_receiver_outlives_a_client_that_leaves_without_a_request() -> None:
    """A delivery cancelled between connecting and sending (the app shutting down) left the
    test receiver an empty request line, and its handler's error failed whichever test was
    running."""
    async with webhook_receiver() as receiver:
        _, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
        writer.close()
        await writer.wait_closed()
        async with httpx.AsyncClient() as client:
            answered = await client.post(receiver.url, content=b"{}")
        assert answered.status_code == 200, answered.text
        assert answered.json() == {"ok": True}
        assert [r.path for r in receiver.received] == ["/hooks/tandem"]
