"""The review queue and content API over HTTP, inside the test's rolled-back transaction
(no executor: jobs are checked as rows). What needs jobs to run is in test_content_pipeline."""

import uuid
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.content.models import ContentItem
from tandem.errors import Conflict
from tandem.identity.models import User
from tandem.identity.principal import Principal, PrincipalKind
from tandem.identity.scopes import Role, scopes_for
from tandem.jobs.models import Job, JobStatus
from tandem.review.kinds import DecisionContext, Outcome, ReviewKind, register_kind
from tandem.review.models import ReviewDecision
from tandem.review.service import fail_generation, open_thread, save_revision
from tandem.review.states import ThreadStatus
from tests.conftest import LoginAs
from tests.factories import JobFactory, ProjectFactory, make_thread, make_user

pytestmark = pytest.mark.anyio

CREATE = {"topics": ["trams", "airports"], "platform": "linkedin", "count": 3, "tone": "casual"}


class ExampleSwap(ReviewKind):
    """A kind like the scheduling swaps: nothing to revise, and approval can fail."""

    name: ClassVar[str] = "test-swap"

    async def approve(self, decision: DecisionContext) -> Outcome:
        if decision.thread.payload.get("still_valid") is False:
            raise Conflict("The swap no longer keeps the rules")
        return Outcome(message="Swap approved and executed", final_content=[{"executed": True}])


register_kind(ExampleSwap())


@pytest.fixture
async def reviewer(db_session: AsyncSession) -> User:
    return await make_user(Role.reviewer)


def principal_of(user: User) -> Principal:
    return Principal(
        kind=PrincipalKind.user,
        id=user.id,
        user_id=user.id,
        organization_id=user.organization_id,
        scopes=scopes_for(Role(user.role)),
    )


async def test_create_answers_202_and_stores_the_thread_and_its_job(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, db_session: AsyncSession
) -> None:
    headers = await login_as(member)
    response = await client.post("/api/content/create", json=CREATE, headers=headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "generating"
    assert accepted["request_type"] == "text"
    thread = (await client.get(f"/api/hitl/{accepted['thread_id']}", headers=headers)).json()
    assert thread["status"] == "generating"
    assert thread["kind"] == "content"
    assert thread["revision"] == 0
    assert thread["drafts"] == []
    assert thread["request"] == {**CREATE, "brief": None}
    assert thread["job_id"] == accepted["job_id"]
    job = await db_session.get(Job, uuid.UUID(accepted["job_id"]))
    assert job is not None
    assert (job.task, job.status, job.organization_id) == (
        "content.generate",
        JobStatus.pending,
        member.organization_id,
    )
    assert job.payload == {"thread_id": accepted["thread_id"], "revision": 1}


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        pytest.param({"topics": []}, ["body", "topics"], id="no-topics"),
        pytest.param({"topics": [" "]}, ["body", "topics", 0], id="blank-topic"),
        pytest.param({"platform": "myspace"}, ["body", "platform"], id="unknown-platform"),
        pytest.param({"count": 0}, ["body", "count"], id="count-zero"),
        pytest.param({"count": 51}, ["body", "count"], id="count-over-50"),
        pytest.param({"tone": "angry"}, ["body", "tone"], id="unknown-tone"),
        pytest.param({"brief": "x" * 4001}, ["body", "brief"], id="brief-too-long"),
        pytest.param({"brief": "a\x00b"}, ["body", "brief"], id="brief-with-nul"),
    ],
)
async def test_create_refuses_a_bad_request_with_422(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    member: User,
    change: dict[str, Any],
    loc: list[str | int],
) -> None:
    response = await client.post(
        "/api/content/create", json=CREATE | change, headers=await login_as(member)
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


async def test_create_in_another_organizations_project_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    stranger = await make_user()
    project = await ProjectFactory.create_async(
        organization_id=stranger.organization_id, owner_id=stranger.id
    )
    response = await client.post(
        "/api/content/create",
        json=CREATE | {"project_id": str(project.id)},
        headers=await login_as(member),
    )
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"Project {project.id} not found"}


async def test_pending_lists_waiting_threads_oldest_first(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    org = member.organization_id
    first = await make_thread(org, drafts=["Oldest post"], edit_count=1)
    second = await make_thread(org, drafts=["a", "b", "c"], platform="twitter")
    await make_thread(org, status=ThreadStatus.published)
    await make_thread(org, status=ThreadStatus.generating, revision=0)
    await make_thread((await make_user()).organization_id)  # another tenant's
    headers = await login_as(member)
    listed = (await client.get("/api/hitl/pending", headers=headers)).json()
    assert listed["count"] == 2
    assert [item["thread_id"] for item in listed["items"]] == [str(first.id), str(second.id)]
    item = listed["items"][0]
    assert item == {
        "thread_id": str(first.id),
        "kind": "content",
        "platform": "linkedin",
        "content_count": 1,
        "edit_count": 1,
        "created_at": item["created_at"],
        "preview": "Oldest post",
    }
    assert listed["items"][1]["content_count"] == 3
    page = (await client.get("/api/hitl/pending?limit=1&offset=1", headers=headers)).json()
    assert page["count"] == 2
    assert [item["thread_id"] for item in page["items"]] == [str(second.id)]


@pytest.mark.parametrize(
    ("decision", "feedback", "status", "message", "final_content", "edit_count"),
    [
        pytest.param("approve", "", "published", "approved", ["One", "Two"], 0, id="approve"),
        pytest.param("reject", "Off brand", "rejected", "rejected", None, 0, id="reject"),
        pytest.param("edit", "Shorter", "regenerating", "revision 2", None, 1, id="edit"),
    ],
)
async def test_a_decision_is_recorded_with_who_and_when(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    reviewer: User,
    db_session: AsyncSession,
    decision: str,
    feedback: str,
    status: str,
    message: str,
    final_content: list[str] | None,
    edit_count: int,
) -> None:
    thread = await make_thread(reviewer.organization_id, drafts=["One", "Two"])
    headers = await login_as(reviewer)
    response = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": decision, "feedback": feedback},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["thread_id"] == str(thread.id)
    assert body["status"] == status
    assert message in body["message"]
    assert body["final_content"] == final_content
    stored = (await client.get(f"/api/hitl/{thread.id}", headers=headers)).json()
    assert stored["status"] == status
    assert stored["edit_count"] == edit_count
    assert len(stored["decisions"]) == 1
    recorded = stored["decisions"][0]
    assert recorded["revision"] == 1
    assert recorded["decision"] == decision
    assert recorded["decided_by"] == {
        "kind": "user",
        "id": str(reviewer.id),
        "user_id": str(reviewer.id),
    }
    assert recorded["decided_at"]
    assert [f["feedback"] for f in stored["feedback"]] == ([feedback] if feedback else [])
    published = (await client.get("/api/content?status=published", headers=headers)).json()
    assert [item["body"] for item in published["items"]] == (
        ["One", "Two"] if decision == "approve" else []
    )
    jobs = (await db_session.scalars(select(Job).where(Job.task == "content.generate"))).all()
    if decision == "edit":
        assert [job.payload for job in jobs] == [{"thread_id": str(thread.id), "revision": 2}]
        assert stored["job_id"] == str(jobs[0].id)
    else:
        assert jobs == []


async def test_published_content_is_listed_with_its_thread(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User
) -> None:
    thread = await make_thread(reviewer.organization_id, drafts=["Post A", "Post B"])
    headers = await login_as(reviewer)
    await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": "approve"},
        headers=headers,
    )
    listed = (await client.get(f"/api/content?thread_id={thread.id}", headers=headers)).json()
    assert listed["count"] == 2
    first = listed["items"][0]
    assert first["thread_id"] == str(thread.id)
    assert (first["body"], first["position"], first["revision"]) == ("Post A", 0, 1)
    assert (first["platform"], first["status"]) == ("linkedin", "published")
    assert first["published_by_id"] == str(reviewer.id)
    bad = await client.get("/api/content?status=draft", headers=headers)
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"][0]["loc"] == ["query", "status"]


async def test_unknown_thread_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User
) -> None:
    missing = uuid.uuid4()
    headers = await login_as(reviewer)
    read = await client.get(f"/api/hitl/{missing}", headers=headers)
    assert read.status_code == 404, read.text
    assert read.json() == {"detail": f"Thread {missing} not found"}
    decide = await client.post(
        "/api/hitl/resume", json={"thread_id": str(missing), "decision": "approve"}, headers=headers
    )
    assert decide.status_code == 404, decide.text
    assert decide.json() == {"detail": f"Thread {missing} not found"}


async def test_another_tenants_thread_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User, db_session: AsyncSession
) -> None:
    theirs = await make_thread((await make_user()).organization_id)
    headers = await login_as(reviewer)
    read = await client.get(f"/api/hitl/{theirs.id}", headers=headers)
    assert read.status_code == 404, read.text
    assert read.json() == {"detail": f"Thread {theirs.id} not found"}
    decide = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(theirs.id), "decision": "reject"},
        headers=headers,
    )
    assert decide.status_code == 404, decide.text
    assert decide.json() == {"detail": f"Thread {theirs.id} not found"}
    assert await db_session.scalar(select(ReviewDecision)) is None


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(ThreadStatus.published, id="published"),
        pytest.param(ThreadStatus.rejected, id="rejected"),
        pytest.param(ThreadStatus.regenerating, id="regenerating"),
        pytest.param(ThreadStatus.failed, id="failed"),
    ],
)
async def test_a_thread_not_pending_review_is_409(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    reviewer: User,
    db_session: AsyncSession,
    status: ThreadStatus,
) -> None:
    thread = await make_thread(reviewer.organization_id, status=status)
    response = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": "approve"},
        headers=await login_as(reviewer),
    )
    assert response.status_code == 409, response.text
    assert response.json() == {
        "detail": f"Thread {thread.id} is {status.value}, not pending_review: "
        "it takes no decision now"
    }
    assert await db_session.scalar(select(ReviewDecision)) is None


async def test_a_second_decision_on_the_same_round_is_409(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User, db_session: AsyncSession
) -> None:
    thread = await make_thread(reviewer.organization_id)
    headers = await login_as(reviewer)
    body = {"thread_id": str(thread.id), "decision": "approve"}
    assert (await client.post("/api/hitl/resume", json=body, headers=headers)).status_code == 200
    again = await client.post(
        "/api/hitl/resume", json=body | {"decision": "reject"}, headers=headers
    )
    assert again.status_code == 409, again.text
    assert "published, not pending_review" in again.json()["detail"]
    decisions = (await db_session.scalars(select(ReviewDecision))).all()
    assert [d.decision.value for d in decisions] == ["approve"]
    items = (await db_session.scalars(select(ContentItem))).all()
    assert len(items) == 2


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        pytest.param(
            {"decision": "maybe"}, ["body", "decision"], "Input should be", id="bad-value"
        ),
        pytest.param(
            {"decision": "edit"}, ["body", "feedback"], "edit needs feedback", id="edit-no-feedback"
        ),
        pytest.param(
            {"decision": "edit", "feedback": "   "},
            ["body", "feedback"],
            "edit needs feedback",
            id="edit-blank-feedback",
        ),
        pytest.param({"thread_id": "nope"}, ["body", "thread_id"], "UUID", id="bad-thread-id"),
        pytest.param(
            {"decision": "reject", "feedback": "a\x00b"},
            ["body", "feedback"],
            "NUL",
            id="feedback-with-nul",
        ),
    ],
)
async def test_bad_decisions_are_422(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    reviewer: User,
    db_session: AsyncSession,
    body: dict[str, str],
    loc: list[str],
    message: str,
) -> None:
    thread = await make_thread(reviewer.organization_id)
    response = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id)} | body,
        headers=await login_as(reviewer),
    )
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == loc
    assert message in error["msg"]
    assert (await client.get(f"/api/hitl/{thread.id}", headers=await login_as(reviewer))).json()[
        "status"
    ] == "pending_review"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/api/hitl/pending", id="pending"),
        pytest.param("GET", f"/api/hitl/{uuid.UUID(int=1)}", id="thread"),
        pytest.param("POST", "/api/hitl/resume", id="resume"),
        pytest.param("POST", "/api/content/create", id="create"),
        pytest.param("GET", "/api/content", id="content"),
    ],
)
async def test_no_credentials_is_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, json={})
    assert response.status_code == 401, response.text
    assert "Authorization" in response.json()["detail"]
    assert "X-API-Key" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("scopes", "method", "path", "body", "missing"),
    [
        pytest.param({"agent:read"}, "GET", "/api/hitl/pending", None, "review:read", id="pending"),
        pytest.param({"agent:read"}, "GET", "/api/content", None, "review:read", id="content"),
        pytest.param(
            {"review:read"}, "POST", "/api/content/create", CREATE, "agent:run", id="create"
        ),
    ],
)
async def test_missing_scope_is_403(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    member: User,
    scopes: set[str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    missing: str,
) -> None:
    response = await client.request(method, path, json=body, headers=await login_as(member, scopes))
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": f"Missing required scope: {missing}"}


async def test_a_member_cannot_decide(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, db_session: AsyncSession
) -> None:
    thread = await make_thread(member.organization_id)
    response = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": "approve"},
        headers=await login_as(member),
    )
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Missing required scope: review:write"}
    assert await db_session.scalar(select(ReviewDecision)) is None


async def test_an_api_key_reads_and_decides(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User
) -> None:
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "review bot", "scopes": ["review:read", "review:write"]},
        headers=await login_as(reviewer),
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    thread = await make_thread(reviewer.organization_id)
    listed = (await client.get("/api/hitl/pending", headers=key)).json()
    assert [item["thread_id"] for item in listed["items"]] == [str(thread.id)]
    decided = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": "reject", "feedback": "Not now"},
        headers=key,
    )
    assert decided.json()["status"] == "rejected"
    stored = (await client.get(f"/api/hitl/{thread.id}", headers=key)).json()
    assert stored["decisions"][0]["decided_by"] == {
        "kind": "api_key",
        "id": created.json()["id"],
        "user_id": str(reviewer.id),
    }


async def test_a_thread_whose_generation_job_is_cancelled_fails_with_it(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User
) -> None:
    """The job is given up before it ran: the thread fails in the same transaction (the
    task's `on_give_up`), not when someone next reads it."""
    thread = await make_thread(reviewer.organization_id, status=ThreadStatus.generating, revision=0)
    job = await JobFactory.create_async(
        organization_id=reviewer.organization_id,
        submitted_by_id=reviewer.id,
        task="content.generate",
        payload={"thread_id": str(thread.id), "revision": 1},
        status=JobStatus.pending,
    )
    thread.job_id = job.id
    headers = await login_as(reviewer)
    cancelled = await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled", cancelled.text
    stored = (await client.get(f"/api/hitl/{thread.id}", headers=headers)).json()
    assert (stored["status"], stored["error"]) == ("failed", "The job was cancelled")


async def test_reading_a_generating_thread_changes_nothing(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User
) -> None:
    """Only a job recorded as given up fails its thread; a read never does, even when the
    job row is not what the thread expects (here: missing)."""
    thread = await make_thread(
        reviewer.organization_id, status=ThreadStatus.generating, revision=0, job_id=None
    )
    stored = (await client.get(f"/api/hitl/{thread.id}", headers=await login_as(reviewer))).json()
    assert (stored["status"], stored["error"]) == ("generating", None)


@pytest.mark.parametrize(
    ("status", "revision"),
    [
        pytest.param(ThreadStatus.pending_review, 1, id="already-saved"),
        pytest.param(ThreadStatus.generating, 1, id="another-revision"),
        pytest.param(ThreadStatus.published, 0, id="decided"),
    ],
)
async def test_a_generation_ending_for_a_revision_not_being_written_changes_nothing(
    db_session: AsyncSession, reviewer: User, status: ThreadStatus, revision: int
) -> None:
    thread = await make_thread(reviewer.organization_id, status=status, revision=revision)
    assert not await fail_generation(db_session, thread.id, revision=1, error="late")
    assert not await save_revision(db_session, thread.id, revision=1, drafts=["late"])
    assert not await fail_generation(db_session, uuid.uuid4(), revision=1, error="gone")
    await db_session.refresh(thread)
    assert (thread.status, thread.revision, thread.error) == (status, revision, None)


async def test_another_kind_opens_pending_and_supplies_its_decisions(
    client: httpx.AsyncClient, login_as: LoginAs, reviewer: User, db_session: AsyncSession
) -> None:
    principal = principal_of(reviewer)
    drafts = [{"swap": "A takes B's Monday clinic"}]
    thread = await open_thread(
        db_session,
        principal,
        kind="test-swap",
        drafts=drafts,
        payload={"still_valid": True},
        quota=10,
    )
    stale = await open_thread(
        db_session,
        principal,
        kind="test-swap",
        drafts=drafts,
        payload={"still_valid": False},
        quota=10,
    )
    headers = await login_as(reviewer)
    listed = (await client.get("/api/hitl/pending?kind=test-swap", headers=headers)).json()
    assert [(i["kind"], i["platform"], i["content_count"]) for i in listed["items"]] == [
        ("test-swap", None, 1),
        ("test-swap", None, 1),
    ]
    edit = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": "edit", "feedback": "Tuesday instead"},
        headers=headers,
    )
    assert edit.status_code == 422, edit.text
    assert edit.json()["detail"][0]["msg"] == "edit is not allowed for test-swap threads"
    refused = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(stale.id), "decision": "approve"},
        headers=headers,
    )
    assert refused.status_code == 409, refused.text
    assert refused.json() == {"detail": "The swap no longer keeps the rules"}
    approved = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": "approve"},
        headers=headers,
    )
    assert approved.json() == {
        "thread_id": str(thread.id),
        "status": "published",
        "message": "Swap approved and executed",
        "final_content": [{"executed": True}],
    }
    states = {
        t: (await client.get(f"/api/hitl/{t}", headers=headers)).json()
        for t in (thread.id, stale.id)
    }
    assert states[stale.id]["status"] == "pending_review"
    assert states[stale.id]["decisions"] == []
    assert [d["decision"] for d in states[thread.id]["decisions"]] == ["approve"]
