"""The jobs API (API.md "Jobs") on both databases; execution is in test_jobs_execution.py."""

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import utcnow
from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.jobs.models import AttemptOutcome, JobAttempt, JobStatus
from tandem.notifications.models import OutboxMessage
from tests.conftest import LoginAs
from tests.factories import JobFactory, make_user

pytestmark = pytest.mark.anyio

JOB_FIELDS = {
    "id",
    "task",
    "status",
    "attempts",
    "max_attempts",
    "payload",
    "result",
    "last_error",
    "created_at",
    "updated_at",
    "next_run_at",
}


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await client.post("/api/v1/jobs", json={"task": "echo"} | body, headers=headers)


async def test_submit_is_202_with_the_job(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    response = await submit(client, await login_as(member), payload={"x": 1}, max_attempts=5)
    assert response.status_code == 202, response.text
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert (job["task"], job["status"], job["attempts"], job["max_attempts"]) == (
        "echo",
        "pending",
        0,
        5,
    )
    assert job["payload"] == {"x": 1}
    assert job["result"] is None


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        pytest.param({"task": "nope"}, ["body", "task"], "Known tasks: echo", id="unknown-task"),
        pytest.param(
            {"task": "content.generate", "payload": {}},
            ["body", "task"],
            "Unknown task 'content.generate'. Known tasks: echo",
            id="internal-task",
        ),
        pytest.param({"task": ""}, ["body", "task"], "at least 1 character", id="empty-task"),
        pytest.param(
            {"payload": {"duration_seconds": 61}},
            ["body", "payload", "duration_seconds"],
            "less than or equal to 60",
            id="too-long",
        ),
        pytest.param(
            {"payload": {"fail_times": -1}},
            ["body", "payload", "fail_times"],
            "greater than",
            id="negative",
        ),
        pytest.param(
            {"max_attempts": 0}, ["body", "max_attempts"], "greater than", id="no-attempts"
        ),
        pytest.param({"payload": []}, ["body", "payload"], "dictionary", id="payload-not-object"),
    ],
)
async def test_bad_submissions_are_422(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    member: User,
    body: dict[str, object],
    loc: list[str],
    message: str,
) -> None:
    response = await submit(client, await login_as(member), **body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc
    assert message in error["msg"]


async def test_the_same_idempotency_key_returns_the_first_job(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    first = await submit(client, headers, idempotency_key="order-42", payload={"n": 1})
    again = await submit(client, headers, idempotency_key="order-42", payload={"n": 2})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["payload"] == {"n": 1}
    other_org = await submit(client, await login_as(await make_user()), idempotency_key="order-42")
    assert other_org.status_code == 202, "keys are per organization"
    assert other_org.json()["id"] != first.json()["id"]


async def test_list_filters_by_status_and_task(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    org = member.organization_id
    dead = await JobFactory.create_async(organization_id=org, status=JobStatus.dead, attempts=3)
    await JobFactory.create_async(organization_id=org)
    await JobFactory.create_async(organization_id=None)  # a system job: never listed
    headers = await login_as(member)
    everything = (await client.get("/api/v1/jobs", headers=headers)).json()
    assert everything["count"] == 2
    dead_letter = (await client.get("/api/v1/jobs?status=dead", headers=headers)).json()
    assert [j["id"] for j in dead_letter["items"]] == [str(dead.id)]
    assert dead_letter["count"] == 1
    none = (await client.get("/api/v1/jobs?task=other", headers=headers)).json()
    assert none == {"items": [], "count": 0}


@pytest.mark.parametrize(
    "value", [pytest.param("bogus", id="unknown"), pytest.param("", id="empty")]
)
async def test_unknown_or_empty_status_filter_is_422(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, value: str
) -> None:
    response = await client.get(f"/api/v1/jobs?status={value}", headers=await login_as(member))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "status"]
    assert "pending" in response.json()["detail"][0]["msg"]


async def test_detail_has_the_attempt_history(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    job = (await submit(client, await login_as(member))).json()
    detail = await client.get(f"/api/v1/jobs/{job['id']}", headers=await login_as(member))
    assert detail.status_code == 200, detail.text
    assert detail.json()["attempt_history"] == []
    assert detail.json()["cancel_requested"] is False


async def test_detail_lists_every_attempt_in_order(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, db_session: AsyncSession
) -> None:
    job = await JobFactory.create_async(
        organization_id=member.organization_id,
        status=JobStatus.running,
        attempts=2,
        runs=2,
        payload={"n": 1},
        result=None,
        last_error="RuntimeError: first",
        cancel_requested=True,
    )
    started = utcnow()
    db_session.add_all(
        [
            JobAttempt(
                job_id=job.id,
                number=2,
                worker="w-2",
                outcome=AttemptOutcome.running,
                started_at=started,
            ),
            JobAttempt(
                job_id=job.id,
                number=1,
                worker="w-1",
                outcome=AttemptOutcome.failed,
                started_at=started,
                finished_at=started,
                error="RuntimeError: first",
            ),
        ]
    )
    await db_session.flush()
    response = await client.get(f"/api/v1/jobs/{job.id}", headers=await login_as(member))
    assert response.status_code == 200, response.text
    detail = response.json()
    assert set(detail) == JOB_FIELDS | {"cancel_requested", "attempt_history"}
    # The job's columns come once, whatever the number of attempts joined to it.
    assert (
        detail["id"],
        detail["status"],
        detail["payload"],
        detail["last_error"],
        detail["cancel_requested"],
    ) == (str(job.id), "running", {"n": 1}, "RuntimeError: first", True)
    history = detail["attempt_history"]
    assert [(a["attempt"], a["outcome"], a["worker"], a["error"]) for a in history] == [
        (1, "failed", "w-1", "RuntimeError: first"),
        (2, "running", "w-2", None),
    ]
    assert set(history[0]) == {"attempt", "started_at", "finished_at", "error", "outcome", "worker"}
    assert datetime.fromisoformat(history[0]["finished_at"]) == started
    assert datetime.fromisoformat(history[1]["started_at"]) == started
    assert history[1]["finished_at"] is None


async def test_list_pages_newest_first_with_the_total(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    ids = [(await submit(client, headers, payload={"i": i})).json()["id"] for i in range(3)]
    await JobFactory.create_async(organization_id=(await make_user()).organization_id)

    async def page(query: str) -> Any:
        response = await client.get(f"/api/v1/jobs?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    first = await page("limit=2")
    assert [j["id"] for j in first["items"]] == [ids[2], ids[1]]
    assert first["count"] == 3
    assert set(first["items"][0]) == JOB_FIELDS
    second = await page("limit=2&offset=2")
    assert [j["id"] for j in second["items"]] == [ids[0]]
    assert second["count"] == 3
    assert await page("limit=2&offset=3") == {"items": [], "count": 3}
    assert await page("offset=1000") == {"items": [], "count": 3}


async def test_cancel_pending_then_cancel_again_is_409(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    job = (await submit(client, headers)).json()
    cancelled = await client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers)
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "Cannot cancel a job that is cancelled"}


async def test_cancel_running_requests_cancellation(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    job = await JobFactory.create_async(
        organization_id=member.organization_id,
        submitted_by_id=member.id,
        status=JobStatus.running,
        attempts=1,
        runs=1,
    )
    response = await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=await login_as(member))
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)


@pytest.mark.parametrize(
    "status",
    [pytest.param(JobStatus.dead, id="dead"), pytest.param(JobStatus.cancelled, id="cancelled")],
)
async def test_retry_gives_a_fresh_budget(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, status: JobStatus
) -> None:
    job = await JobFactory.create_async(
        organization_id=member.organization_id,
        submitted_by_id=member.id,
        status=status,
        attempts=3,
        runs=3,
        last_error="boom",
    )
    response = await client.post(f"/api/v1/jobs/{job.id}/retry", headers=await login_as(member))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["attempts"], body["max_attempts"]) == ("pending", 0, 3)
    assert body["last_error"] == "boom", "the history of what went wrong is kept"


@pytest.mark.parametrize(
    ("status", "action"),
    [
        pytest.param(JobStatus.pending, "retry", id="retry-pending"),
        pytest.param(JobStatus.running, "retry", id="retry-running"),
        pytest.param(JobStatus.succeeded, "retry", id="retry-succeeded"),
        pytest.param(JobStatus.succeeded, "cancel", id="cancel-succeeded"),
        pytest.param(JobStatus.dead, "cancel", id="cancel-dead"),
    ],
)
async def test_actions_on_the_wrong_state_are_409(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, status: JobStatus, action: str
) -> None:
    job = await JobFactory.create_async(
        organization_id=member.organization_id, submitted_by_id=member.id, status=status
    )
    response = await client.post(f"/api/v1/jobs/{job.id}/{action}", headers=await login_as(member))
    assert response.status_code == 409, response.text
    assert status.value in response.json()["detail"]


@pytest.mark.parametrize("path", ["", "/retry", "/cancel"])
async def test_another_organizations_job_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, path: str
) -> None:
    stranger = await make_user()
    job = await JobFactory.create_async(organization_id=stranger.organization_id)
    method = "GET" if not path else "POST"
    response = await client.request(
        method, f"/api/v1/jobs/{job.id}{path}", headers=await login_as(member)
    )
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"Job {job.id} not found"}


async def test_unknown_job_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    missing = uuid.uuid4()
    response = await client.get(f"/api/v1/jobs/{missing}", headers=await login_as(member))
    assert response.json() == {"detail": f"Job {missing} not found"}


@pytest.mark.parametrize(
    ("scopes", "method", "path", "missing"),
    [
        pytest.param({"jobs:read"}, "POST", "/api/v1/jobs", "jobs:write", id="submit-needs-write"),
        pytest.param({"jobs:write"}, "GET", "/api/v1/jobs", "jobs:read", id="list-needs-read"),
        pytest.param(
            {"jobs:write"}, "GET", "/api/v1/jobs/tasks", "jobs:read", id="tasks-need-read"
        ),
    ],
)
async def test_scopes(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    member: User,
    scopes: set[str],
    method: str,
    path: str,
    missing: str,
) -> None:
    kwargs = {"json": {"task": "echo"}} if method == "POST" else {}
    response = await client.request(method, path, headers=await login_as(member, scopes), **kwargs)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": f"Missing required scope: {missing}"}


async def test_tasks_are_listed_with_descriptions(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    response = await client.get("/api/v1/jobs/tasks", headers=await login_as(member))
    body = response.json()
    assert [item["name"] for item in body["items"]] == ["echo"], "internal tasks are not listed"
    assert body["count"] == 1
    assert "fail_times" in body["items"][0]["description"]


async def test_notify_queues_the_submitted_email(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, db_session: AsyncSession
) -> None:
    job = (await submit(client, await login_as(member), notify=True)).json()
    message = await db_session.scalar(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == f"job:{job['id']}:submitted")
    )
    assert message is not None
    assert message.subject == f"Job {job['id']} submitted"
    assert message.recipient == member.email
    quiet = (await submit(client, await login_as(member))).json()
    assert (
        await db_session.scalar(
            select(OutboxMessage).where(OutboxMessage.dedupe_key == f"job:{quiet['id']}:submitted")
        )
        is None
    )


async def test_a_pending_job_of_a_task_no_longer_in_the_code_can_be_cancelled(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    job = await JobFactory.create_async(
        organization_id=member.organization_id,
        submitted_by_id=member.id,
        task="retired.task",
        status=JobStatus.pending,
    )
    response = await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=await login_as(member))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    "action", [pytest.param("cancel", id="cancel"), pytest.param("retry", id="retry")]
)
async def test_another_users_job_needs_jobs_admin(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, action: str
) -> None:
    """Finding 10 of issue 13: the submitter or a holder of jobs:admin controls a job."""
    colleague = await make_user(organization_id=member.organization_id)
    status = JobStatus.pending if action == "cancel" else JobStatus.dead
    after = "cancelled" if action == "cancel" else "pending"  # what the action leaves
    job = await JobFactory.create_async(
        organization_id=member.organization_id, submitted_by_id=colleague.id, status=status
    )
    refused = await client.post(f"/api/v1/jobs/{job.id}/{action}", headers=await login_as(member))
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "Missing required scope: jobs:admin"}
    system = await JobFactory.create_async(organization_id=member.organization_id, status=status)
    refused = await client.post(
        f"/api/v1/jobs/{system.id}/{action}", headers=await login_as(member)
    )
    assert refused.status_code == 403, refused.text
    admin = await make_user(Role.admin, organization_id=member.organization_id)
    allowed = await client.post(f"/api/v1/jobs/{job.id}/{action}", headers=await login_as(admin))
    assert allowed.status_code == 200, allowed.text
    assert (allowed.json()["id"], allowed.json()["status"]) == (str(job.id), after)
    own = await JobFactory.create_async(
        organization_id=member.organization_id, submitted_by_id=member.id, status=status
    )
    mine = await client.post(f"/api/v1/jobs/{own.id}/{action}", headers=await login_as(member))
    assert mine.status_code == 200, mine.text
    assert (mine.json()["id"], mine.json()["status"]) == (str(own.id), after)
