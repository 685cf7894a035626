"""The console's agents page: run an agent (as a background run), read its output, see the
recent runs with status, model and token usage."""

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.agents.models import AgentRun, RunStatus
from tandem.db import utcnow
from tandem.identity.principal import PrincipalKind
from tandem.identity.scopes import Role
from tests.console_support import assert_console_page, browser, sign_in
from tests.factories import make_user

pytestmark = pytest.mark.anyio


async def test_a_member_runs_the_classifier_with_labels_and_sees_the_run(
    app: FastAPI, client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    member = await make_user(Role.member)
    async with browser(app) as page:
        token = await sign_in(page, member.email)
        shown = await page.get("/ui/agents")
        assert shown.status_code == 200, shown.text
        assert_console_page(shown)
        for control in ('for="agent_id">Agent<', 'for="input_text">Input<', 'for="labels">Labels<'):
            assert control in shown.text
        assert 'value="classifier"' in shown.text
        assert "No runs yet." in shown.text

        response = await page.post(
            "/ui/agents/run",
            data={
                "csrf_token": token,
                "agent_id": "classifier",
                "input_text": "The invoice was charged twice",
                "labels": "billing, praise ,",
            },
        )
        assert response.status_code == 303, response.text
        run = await db_session.scalar(
            select(AgentRun).where(AgentRun.organization_id == member.organization_id)
        )
        assert run is not None
        assert response.headers["location"] == f"/ui/agents?run={run.id}"
        assert (run.agent_id, run.status) == ("classifier", RunStatus.queued)
        assert run.parameters == {"labels": ["billing", "praise"]}
        assert run.job_id is not None

        queued = await page.get(response.headers["location"])
        assert "Running… the output appears here" in queued.text
        assert 'data-poll="1000"' in queued.text
        assert f'href="/ui/agents?run={run.id}"' in queued.text

        refused = await page.post(
            "/ui/agents/run", data={"agent_id": "summarizer", "input_text": "Text"}
        )
        assert refused.status_code == 403, refused.text
        assert "did not carry a valid security token" in refused.text
        blank = await page.post(
            "/ui/agents/run",
            data={"csrf_token": token, "agent_id": "summarizer", "input_text": "   "},
        )
        assert blank.status_code == 422, blank.text
        assert_console_page(blank)
        assert "input_text" in blank.text
        unknown = await page.post(
            "/ui/agents/run",
            data={"csrf_token": token, "agent_id": "oracle", "input_text": "Will it rain?"},
        )
        assert unknown.status_code == 404, unknown.text
        assert "Agent &#39;oracle&#39; not found" in unknown.text


async def test_a_finished_run_shows_output_model_and_tokens_and_other_orgs_runs_are_404(
    app: FastAPI, client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    member = await make_user(Role.member)
    stranger = await make_user(Role.member)
    runs = []
    for owner in (member, stranger):
        run = AgentRun(
            organization_id=owner.organization_id,
            user_id=owner.id,
            principal_kind=PrincipalKind.user.value,
            principal_id=owner.id,
            agent_id="summarizer",
            status=RunStatus.completed,
            input_text="A long text about trams.",
            parameters={},
            output="Trams are long.",
            input_tokens=12,
            output_tokens=5,
            requests=1,
            model="offline",
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        db_session.add(run)
        runs.append(run)
    await db_session.flush()
    async with browser(app) as page:
        await sign_in(page, member.email)
        shown = await page.get("/ui/agents", params={"run": str(runs[0].id)})
        assert shown.status_code == 200, shown.text
        assert "Trams are long." in shown.text
        assert "tokens 17 (12 in, 5 out)" in shown.text
        assert "model offline" in shown.text
        assert 'data-poll="0"' in shown.text
        assert f"/ui/agents?run={runs[1].id}" not in shown.text
        assert (await page.get("/ui/agents", params={"run": str(runs[1].id)})).status_code == 404
        assert (await page.get("/ui/agents", params={"run": "nope"})).status_code == 404
        assert (await page.get("/ui/agents", params={"run": str(uuid.uuid4())})).status_code == 404
