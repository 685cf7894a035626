"""The plugin through `tandem.testing` only: installed, loaded, and working in a real app."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pydantic_ai.models import Model

from tandem.testing import Principal, scripted

pytestmark = pytest.mark.anyio

MakePrincipal = Callable[..., Awaitable[Principal]]


async def test_the_agent_is_listed_and_runs_on_a_scripted_model(
    tandem_client: httpx.AsyncClient,
    tandem_principal: MakePrincipal,
    agent_model: Callable[[str, Model], None],
) -> None:
    member = await tandem_principal(role="member")
    agents = (await tandem_client.get("/api/v1/agents", headers=member.headers)).json()
    assert "ticket-triage" in [agent["agent_id"] for agent in agents["items"]]

    answer = {"category": "billing", "reply": "We are sorry: a corrected invoice is on its way."}
    agent_model("ticket-triage", scripted(json.dumps(answer)))
    body = {"agent_id": "ticket-triage", "input_text": "My invoice is wrong"}
    run = await tandem_client.post("/api/v1/agents/run", json=body, headers=member.headers)
    assert run.status_code == 200, run.text
    assert json.loads(run.json()["output"]) == answer


async def test_the_batch_task_triages_every_ticket(
    tandem_principal: MakePrincipal, run_job: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    member = await tandem_principal(role="member")
    tickets = ["The app shows an error on login", "Where is my invoice?"]
    job = await run_job("tickets.triage", {"tickets": tickets}, principal=member)
    assert job["status"] == "succeeded", job["last_error"]
    assert [t["category"] for t in job["result"]["triaged"]] == ["bug", "billing"]


async def test_the_task_is_listed_and_refuses_an_empty_batch(
    tandem_client: httpx.AsyncClient, tandem_principal: MakePrincipal
) -> None:
    member = await tandem_principal(role="member", scopes={"jobs:read", "jobs:write"})
    tasks = (await tandem_client.get("/api/v1/jobs/tasks", headers=member.headers)).json()
    assert "tickets.triage" in [task["name"] for task in tasks["items"]]
    body = {"task": "tickets.triage", "payload": {"tickets": []}}
    refused = await tandem_client.post("/api/v1/jobs", json=body, headers=member.headers)
    assert refused.status_code == 422


async def test_a_principal_by_scopes_holds_only_those(tandem_principal: MakePrincipal) -> None:
    narrowed = await tandem_principal(role="reviewer", scopes={"review:read"})
    assert narrowed.scopes == ["review:read"]


async def test_an_approved_reply_is_recorded_on_its_thread(
    tandem_client: httpx.AsyncClient,
    tandem_principal: MakePrincipal,
    run_job: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    member = await tandem_principal(role="member")
    reviewer = await tandem_principal(role="reviewer")
    job = await run_job("tickets.triage", {"tickets": ["Where is my invoice?"]}, principal=member)
    assert job["status"] == "succeeded", job["last_error"]
    (thread_id,) = job["result"]["threads"]

    pending = (await tandem_client.get("/api/hitl/pending", headers=reviewer.headers)).json()
    assert [(item["thread_id"], item["kind"]) for item in pending["items"]] == [
        (thread_id, "ticket_reply")
    ]
    decision = {"thread_id": thread_id, "decision": "approve", "feedback": ""}
    approved = await tandem_client.post("/api/hitl/resume", json=decision, headers=reviewer.headers)
    assert approved.status_code == 200, approved.text
    recorded = {
        "ticket": "Where is my invoice?",
        "category": "billing",
        "sent_reply": "Thanks for contacting us about our product.",
    }
    assert approved.json()["final_content"] == [recorded]
    assert approved.json()["message"] == "Reply approved and recorded"
    thread = (await tandem_client.get(f"/api/hitl/{thread_id}", headers=reviewer.headers)).json()
    assert thread["status"] == "published"
    assert thread["final_content"] == [recorded]


async def test_a_member_cannot_approve_a_reply(
    tandem_client: httpx.AsyncClient,
    tandem_principal: MakePrincipal,
    run_job: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    member = await tandem_principal(role="member")
    job = await run_job("tickets.triage", {"tickets": ["The app shows an error"]}, principal=member)
    decision = {"thread_id": job["result"]["threads"][0], "decision": "approve", "feedback": ""}
    refused = await tandem_client.post("/api/hitl/resume", json=decision, headers=member.headers)
    assert refused.status_code == 403
