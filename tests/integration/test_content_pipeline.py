"""The content pipeline with real jobs on the embedded executor, a database whose commits are
real, and a FunctionModel standing in for the LLM behind the content-writer agent."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import func, select

from tandem.app import create_app
from tandem.content.generation import generate
from tandem.jobs import lifecycle
from tandem.jobs.registry import TaskContext
from tandem.review.models import ReviewDecision, ReviewRevision
from tandem.settings import Settings
from tandem.tasks import TaskResources
from tests.conftest import CommittedDatabase, running
from tests.content_support import ScriptedWriter, expected_draft, use_writer

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]
PASSWORD = "a long enough password"
TOPICS = ["trams", "airports"]
REQUEST = {"topics": TOPICS, "platform": "linkedin", "count": 3, "tone": "casual"}


def settings_for(db: CommittedDatabase, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "data_dir": tmp_path,
        "job_retry_base_seconds": 0.01,
        "job_lease_seconds": 1.5,
        "job_poll_seconds": 0.05,
        "outbox_poll_seconds": 0.05,
        "rate_limit_register": "1000/minute",
        "rate_limit_login": "1000/minute",
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@dataclass
class Live:
    client: httpx.AsyncClient
    headers: dict[str, str]
    wait_until: WaitUntil

    async def create(self, **changes: Any) -> str:
        response = await self.client.post(
            "/api/content/create", json=REQUEST | changes, headers=self.headers
        )
        assert response.status_code == 202, response.text
        return str(response.json()["thread_id"])

    async def thread(self, thread_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/hitl/{thread_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def until(
        self, thread_id: str, status: str, *, revision: int | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            thread = await self.thread(thread_id)
            if thread["status"] == status and revision in (None, thread["revision"]):
                return thread
            return None

        result: dict[str, Any] = await self.wait_until(reached, timeout=timeout)
        return result

    async def job_once(self, job_id: str, status: str) -> dict[str, Any]:
        """The job once it is `status`: its outcome is recorded just after the thread moved."""

        async def reached() -> dict[str, Any] | None:
            response = await self.client.get(f"/api/v1/jobs/{job_id}", headers=self.headers)
            job: dict[str, Any] = response.json()
            return job if job["status"] == status else None

        result: dict[str, Any] = await self.wait_until(reached, timeout=20)
        return result

    async def resume(
        self,
        thread_id: str,
        decision: str,
        feedback: str = "",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            "/api/hitl/resume",
            json={"thread_id": thread_id, "decision": decision, "feedback": feedback},
            headers=headers or self.headers,
        )


@asynccontextmanager
async def live_app(settings: Settings, wait_until: WaitUntil) -> AsyncIterator[Live]:
    async with running(create_app(settings)) as client:
        body = {"email": "owner@example.com", "password": PASSWORD, "full_name": "Owner"}
        registered = await client.post("/api/v1/auth/register", json=body)
        assert registered.status_code == 201, registered.text
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        yield Live(client, headers, wait_until)


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> ScriptedWriter:
    writer = ScriptedWriter()
    use_writer(monkeypatch, writer)
    return writer


@pytest.fixture
async def live(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil, writer: ScriptedWriter
) -> AsyncIterator[Live]:
    async with live_app(settings_for(committed_db, tmp_path), wait_until) as app:
        yield app


async def test_created_content_waits_for_review_with_the_agents_drafts(
    live: Live, writer: ScriptedWriter
) -> None:
    thread_id = await live.create()
    thread = await live.until(thread_id, "pending_review")
    assert thread["revision"] == 1
    assert thread["edit_count"] == 0
    assert thread["drafts"] == [expected_draft(i, TOPICS) for i in range(3)]
    assert sorted(p["variant"] for p in writer.seen) == [0, 1, 2]
    assert all(p["platform"] == "linkedin" and p["tone"] == "casual" for p in writer.seen)
    pending = (await live.client.get("/api/hitl/pending", headers=live.headers)).json()
    assert pending["count"] == 1
    item = pending["items"][0]
    assert (item["thread_id"], item["kind"], item["platform"]) == (thread_id, "content", "linkedin")
    assert (item["content_count"], item["edit_count"]) == (3, 0)
    assert item["preview"] == expected_draft(0, TOPICS)


@pytest.mark.parametrize(
    ("decision", "feedback", "expected"),
    [
        pytest.param(
            "approve",
            "",
            {"status": "published", "message": "approved", "revision": 1, "published": 3},
            id="approve-publishes",
        ),
        pytest.param(
            "reject",
            "Too salesy for our audience",
            {"status": "rejected", "message": "rejected", "revision": 1, "published": 0},
            id="reject-discards-and-stores-feedback",
        ),
        pytest.param(
            "edit",
            "Mention the night trams",
            {"status": "pending_review", "message": "revision 2", "revision": 2, "published": 0},
            id="edit-regenerates-with-feedback",
        ),
    ],
)
async def test_hitl_decisions(
    live: Live, writer: ScriptedWriter, decision: str, feedback: str, expected: dict[str, Any]
) -> None:
    thread_id = await live.create()
    first = await live.until(thread_id, "pending_review")
    response = await live.resume(thread_id, decision, feedback)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["thread_id"] == thread_id
    assert expected["message"] in body["message"]
    if decision == "approve":
        assert body["status"] == "published"
        assert body["final_content"] == first["drafts"]
    elif decision == "reject":
        assert body["status"] == "rejected"
        assert body["final_content"] is None
    else:
        assert body["status"] == "regenerating"
        assert body["final_content"] is None

    thread = await live.until(thread_id, expected["status"], revision=expected["revision"])
    assert [d["decision"] for d in thread["decisions"]] == [decision]
    assert thread["decisions"][0]["revision"] == 1
    assert [f["feedback"] for f in thread["feedback"]] == ([feedback] if feedback else [])
    published = (
        await live.client.get("/api/content?status=published", headers=live.headers)
    ).json()
    assert published["count"] == expected["published"]
    if decision == "approve":
        assert thread["final_content"] == first["drafts"]
        assert sorted(item["body"] for item in published["items"]) == sorted(first["drafts"])
        assert {item["thread_id"] for item in published["items"]} == {thread_id}
    if decision == "edit":
        assert thread["edit_count"] == 1
        assert thread["drafts"] == [expected_draft(i, TOPICS, feedback) for i in range(3)]
        assert [r["drafts"] for r in thread["revisions"]] == [first["drafts"], thread["drafts"]]
        revising = [p for p in writer.seen if "feedback" in p]
        assert sorted(p["variant"] for p in revising) == [0, 1, 2]
        for parameters in revising:
            assert parameters["feedback"] == feedback
            assert parameters["previous_draft"] == first["drafts"][parameters["variant"]]
        pending = (await live.client.get("/api/hitl/pending", headers=live.headers)).json()
        assert [(i["thread_id"], i["edit_count"]) for i in pending["items"]] == [(thread_id, 1)]


async def test_edit_then_approve_publishes_the_latest_revision(live: Live) -> None:
    thread_id = await live.create(count=2)
    await live.until(thread_id, "pending_review")
    assert (await live.resume(thread_id, "edit", "Shorter")).status_code == 200
    await live.until(thread_id, "pending_review", revision=2)
    assert (await live.resume(thread_id, "edit", "Add a question")).status_code == 200
    third = await live.until(thread_id, "pending_review", revision=3)
    assert third["edit_count"] == 2
    approved = (await live.resume(thread_id, "approve")).json()
    assert approved["final_content"] == third["drafts"]
    assert third["drafts"] == [expected_draft(i, TOPICS, "Add a question") for i in range(2)]
    thread = await live.thread(thread_id)
    assert [(d["revision"], d["decision"]) for d in thread["decisions"]] == [
        (1, "edit"),
        (2, "edit"),
        (3, "approve"),
    ]
    published = (
        await live.client.get(f"/api/content?thread_id={thread_id}", headers=live.headers)
    ).json()
    assert [(i["revision"], i["body"]) for i in published["items"]] == [
        (3, draft) for draft in third["drafts"]
    ]


async def test_a_generation_that_keeps_failing_fails_the_thread_until_its_job_is_retried(
    live: Live, writer: ScriptedWriter
) -> None:
    writer.fail = True
    thread_id = await live.create(count=2)
    thread = await live.until(thread_id, "failed")
    assert thread["error"] == "The model endpoint answered HTTP 503: overloaded"
    job = await live.job_once(thread["job_id"], "dead")
    assert job["attempts"] == 3
    assert thread["drafts"] == []
    decide = await live.resume(thread_id, "approve")
    assert decide.status_code == 409, decide.text
    assert decide.json()["detail"].endswith(
        "is failed, not pending_review: it takes no decision now"
    )

    writer.fail = False  # the model endpoint is back
    retried = await live.client.post(f"/api/v1/jobs/{job['id']}/retry", headers=live.headers)
    assert retried.status_code == 200, retried.text
    # Only a generating thread takes drafts: reaching review proves it came back.
    thread = await live.until(thread_id, "pending_review", revision=1)
    assert thread["error"] is None
    assert thread["drafts"] == [expected_draft(n, TOPICS) for n in range(2)]
    job = await live.job_once(job["id"], "succeeded")
    assert [a["outcome"] for a in job["attempt_history"]][-1] == "succeeded"


async def test_retrying_a_dead_regeneration_job_asks_for_the_revision_again(
    live: Live, writer: ScriptedWriter
) -> None:
    thread_id = await live.create(count=1)
    await live.until(thread_id, "pending_review", revision=1)
    writer.fail = True
    assert (await live.resume(thread_id, "edit", "shorter")).status_code == 200
    failed = await live.until(thread_id, "failed")
    await live.job_once(failed["job_id"], "dead")  # recorded just after the thread failed
    writer.fail = False
    retried = await live.client.post(f"/api/v1/jobs/{failed['job_id']}/retry", headers=live.headers)
    assert retried.status_code == 200, retried.text
    thread = await live.until(thread_id, "pending_review", revision=2)
    assert (thread["edit_count"], thread["error"]) == (1, None)


async def test_a_model_that_recovers_within_the_retries_still_delivers(
    live: Live, writer: ScriptedWriter
) -> None:
    writer.failures_left = 1
    thread_id = await live.create(count=1)
    thread = await live.until(thread_id, "pending_review")
    assert thread["drafts"] == [expected_draft(0, TOPICS)]
    assert thread["error"] is None
    job = await live.job_once(thread["job_id"], "succeeded")
    assert [a["outcome"] for a in job["attempt_history"]] == ["failed", "succeeded"]


async def test_a_decision_on_the_revision_the_reviewer_saw_is_refused_once_it_was_revised(
    live: Live,
) -> None:
    thread_id = await live.create(count=1)
    await live.until(thread_id, "pending_review", revision=1)
    assert (await live.resume(thread_id, "edit", "shorter")).status_code == 200
    await live.until(thread_id, "pending_review", revision=2)
    stale = await live.client.post(
        "/api/hitl/resume",
        json={"thread_id": thread_id, "decision": "approve", "revision": 1},
        headers=live.headers,
    )
    assert stale.status_code == 409, stale.text
    assert stale.json() == {
        "detail": f"Thread {thread_id} is at revision 2, not 1: read its new drafts before deciding"
    }
    current = await live.client.post(
        "/api/hitl/resume",
        json={"thread_id": thread_id, "decision": "approve", "revision": 2},
        headers=live.headers,
    )
    assert current.status_code == 200, current.text
    assert current.json()["final_content"] == [expected_draft(0, TOPICS, "shorter")]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("approve", "approve", id="approve-approve"),
        pytest.param("approve", "reject", id="approve-reject"),
        pytest.param("edit", "approve", id="edit-approve"),
    ],
)
async def test_two_reviewers_at_once_get_one_200_and_one_409(
    live: Live, committed_db: CommittedDatabase, writer: ScriptedWriter, first: str, second: str
) -> None:
    created = await live.client.post(
        "/api/v1/users",
        json={
            "email": "second@example.com",
            "password": PASSWORD,
            "full_name": "Second",
            "role": "reviewer",
        },
        headers=live.headers,
    )
    assert created.status_code == 201, created.text
    login = await live.client.post(
        "/api/v1/auth/login", json={"email": "second@example.com", "password": PASSWORD}
    )
    other = {"Authorization": f"Bearer {login.json()['access_token']}"}
    thread_id = await live.create(count=2)
    await live.until(thread_id, "pending_review")
    # An edit's regeneration must not finish between the two requests, or the later one
    # would decide on revision 2: both decisions are to meet revision 1.
    writer.delay_seconds = 60
    answers: dict[str, httpx.Response] = {}

    async def decide(name: str, decision: str, headers: dict[str, str]) -> None:
        answers[name] = await live.resume(thread_id, decision, "Try again", headers)

    async with anyio.create_task_group() as group:
        group.start_soon(decide, "first", first, live.headers)
        group.start_soon(decide, "second", second, other)

    codes = sorted(response.status_code for response in answers.values())
    assert codes == [200, 409], {k: r.text for k, r in answers.items()}
    loser = next(r for r in answers.values() if r.status_code == 409)
    assert "pending_review" in loser.json()["detail"] or "someone else" in loser.json()["detail"]
    winner = next(name for name, r in answers.items() if r.status_code == 200)
    async with committed_db.sessionmaker() as session:
        decisions = (
            await session.scalars(
                select(ReviewDecision).where(ReviewDecision.thread_id == uuid.UUID(thread_id))
            )
        ).all()
    assert [d.decision.value for d in decisions] == [first if winner == "first" else second]
    published = (
        await live.client.get(f"/api/content?thread_id={thread_id}", headers=live.headers)
    ).json()
    assert published["count"] == (2 if decisions[0].decision.value == "approve" else 0)


async def revisions_of(db: CommittedDatabase, thread_id: str) -> list[int]:
    async with db.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(ReviewRevision.number)
                    .where(ReviewRevision.thread_id == uuid.UUID(thread_id))
                    .order_by(ReviewRevision.number)
                )
            ).all()
        )


async def test_a_regeneration_whose_worker_died_completes_when_its_job_runs_again(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil, writer: ScriptedWriter
) -> None:
    """The edit's job was claimed by a process that then died: the thread sits in
    regenerating until the lease expires, the job runs again, and exactly one revision 2
    comes of it."""
    api_only = settings_for(committed_db, tmp_path, worker_enabled=False)
    with_worker = settings_for(committed_db, tmp_path / "worker", job_lease_seconds=1)
    async with live_app(api_only, wait_until) as live:
        thread_id = await live.create(count=2)
        async with running(create_app(with_worker)):
            first = await live.until(thread_id, "pending_review")
        assert (await live.resume(thread_id, "edit", "Less jargon")).status_code == 200
        regenerating = await live.thread(thread_id)
        assert regenerating["status"] == "regenerating"
        claims = await lifecycle.claim_due(committed_db.sessionmaker, "doomed", 10, lease=0.2)
        # (the reviewers' digest job of revision 1 may be claimed with it, and reaped too)
        assert regenerating["job_id"] in [str(claim.job_id) for claim in claims]
        calls_before = writer.calls
        # The doomed worker never finishes; a live one reaps its lease and runs the job again.
        async with running(create_app(with_worker)):
            second = await live.until(thread_id, "pending_review", revision=2)
            job = await live.job_once(second["job_id"], "succeeded")
        assert second["drafts"] == [expected_draft(i, TOPICS, "Less jargon") for i in range(2)]
        assert [r["drafts"] for r in second["revisions"]] == [first["drafts"], second["drafts"]]
        assert writer.calls - calls_before == 2
        assert [a["outcome"] for a in job["attempt_history"]] == ["lease_expired", "succeeded"]
    assert await revisions_of(committed_db, thread_id) == [1, 2]


async def test_a_generation_job_run_again_after_it_saved_writes_nothing(
    live: Live, committed_db: CommittedDatabase, tmp_path: Path, writer: ScriptedWriter
) -> None:
    """A worker that saved the drafts and died before recording the job's success: the job
    runs again and finds its revision already written."""
    thread_id = await live.create(count=2)
    thread = await live.until(thread_id, "pending_review")
    calls = writer.calls
    settings = settings_for(committed_db, tmp_path)
    resources = TaskResources(settings)
    try:
        context = TaskContext(
            job_id=uuid.UUID(thread["job_id"]),
            attempt=2,
            run=2,
            sessionmaker=committed_db.sessionmaker,
            settings=settings,
            resources=resources.mapping,
        )
        again = await generate(context, {"thread_id": thread_id, "revision": 1})
    finally:
        await resources.aclose()
    assert again == {"thread_id": thread_id, "revision": 1, "status": "nothing to do"}
    assert writer.calls == calls
    assert await revisions_of(committed_db, thread_id) == [1]
    assert (await live.thread(thread_id))["drafts"] == thread["drafts"]


async def test_drafts_are_written_concurrently_within_the_limit(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil, writer: ScriptedWriter
) -> None:
    writer.delay_seconds = 0.2
    settings = settings_for(committed_db, tmp_path, content_concurrency=4)
    async with live_app(settings, wait_until) as live:
        threads = [await live.create(count=6), await live.create(count=5)]
        for thread_id in threads:
            await live.until(thread_id, "pending_review")
    assert writer.calls == 11
    assert 1 < writer.max_in_flight <= 4
    async with committed_db.sessionmaker() as session:
        total = await session.scalar(select(func.count()).select_from(ReviewRevision))
    assert total == 2
