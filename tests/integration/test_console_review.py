"""The console's sign-in, inbox and thread pages through the ASGI app, for an admin, a
reviewer and a member; sessions, CSRF and the organization boundary."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import utcnow
from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.review.models import ReviewDecision, ReviewThread
from tandem.review.states import ThreadStatus
from tests.console_support import assert_console_page, browser, csrf_of, sign_in, signed_in
from tests.factories import ReviewRevisionFactory, make_thread, make_user

pytestmark = pytest.mark.anyio


@pytest.fixture
async def reviewer(db_session: AsyncSession) -> User:
    return await make_user(Role.reviewer)


@pytest.fixture
async def as_reviewer(
    app: FastAPI, client: httpx.AsyncClient, reviewer: User
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with signed_in(app, reviewer) as signed:
        yield signed


async def decisions_on(db_session: AsyncSession, thread_id: uuid.UUID) -> int:
    return int(
        await db_session.scalar(select(func.count()).where(ReviewDecision.thread_id == thread_id))
        or 0
    )


async def test_signed_out_requests_go_to_the_sign_in_page(client: httpx.AsyncClient) -> None:
    paths = ("/ui/inbox", f"/ui/threads/{uuid.uuid4()}", "/ui/jobs", "/ui/schedules", "/ui/agents")
    for path in paths:
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=%2Fui%2F")
    login = await client.get("/ui/login")
    assert login.status_code == 200, login.text
    assert_console_page(login)
    assert 'for="email">Email<' in login.text
    assert 'for="password">Password<' in login.text
    assert ">Sign in</button>" in login.text


async def test_wrong_credentials_say_so_and_set_no_session(
    client: httpx.AsyncClient, reviewer: User
) -> None:
    page = await client.get("/ui/login")
    response = await client.post(
        "/ui/login",
        data={
            "email": reviewer.email,
            "password": "wrong password!",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert response.status_code == 401, response.text
    assert "Incorrect email or password" in response.text
    assert "tandem_console" not in client.cookies
    assert (await client.get("/ui/inbox")).status_code == 303


async def test_sign_in_without_the_form_token_is_refused(
    client: httpx.AsyncClient, reviewer: User
) -> None:
    await client.get("/ui/login")
    response = await client.post(
        "/ui/login", data={"email": reviewer.email, "password": "correct horse battery staple"}
    )
    assert response.status_code == 403, response.text
    assert "security token" in response.text
    assert "tandem_console" not in client.cookies


async def test_the_session_cookie_is_http_only_and_same_site(
    client: httpx.AsyncClient, reviewer: User
) -> None:
    page = await client.get("/ui/login")
    response = await client.post(
        "/ui/login",
        data={
            "email": reviewer.email,
            "password": "correct horse battery staple",
            "csrf_token": csrf_of(page.text),
            "next": "https://evil.example/",
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/inbox"  # never another site
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("tandem_console=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/ui" in cookie


async def test_inbox_lists_waiting_threads_oldest_first_with_filters(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, _ = as_reviewer
    org = reviewer.organization_id
    now = utcnow()
    older = await make_thread(org, drafts=["Older post"], created_at=now - timedelta(hours=2))
    newer = await make_thread(
        org, drafts=["Newer tweet"], platform="twitter", created_at=now - timedelta(hours=1)
    )
    await make_thread(org, drafts=["Already done"], status=ThreadStatus.published)
    await make_thread((await make_user()).organization_id, drafts=["Someone else's"])

    response = await page.get("/ui/inbox")
    assert response.status_code == 200, response.text
    assert_console_page(response)
    text = response.text
    assert "<strong>2</strong> waiting" in text
    assert text.index(f"/ui/threads/{older.id}") < text.index(f"/ui/threads/{newer.id}")
    assert "Already done" not in text
    assert "Someone else" not in text

    only_twitter = await page.get("/ui/inbox", params={"platform": "twitter"})
    assert "<strong>1</strong> waiting" in only_twitter.text
    assert "Newer tweet" in only_twitter.text
    assert "Older post" not in only_twitter.text
    swaps = await page.get("/ui/inbox", params={"kind": "swap"})
    assert "<strong>0</strong> waiting" in swaps.text
    assert "Nothing waits for a decision." in swaps.text


async def test_a_reviewer_sees_the_decision_controls_a_member_does_not(
    app: FastAPI, client: httpx.AsyncClient, reviewer: User, db_session: AsyncSession
) -> None:
    member = await make_user(Role.member, organization_id=reviewer.organization_id)
    thread = await make_thread(reviewer.organization_id, drafts=["Draft one", "Draft two"])
    async with browser(app) as as_reviewer, browser(app) as as_member:
        await sign_in(as_reviewer, reviewer.email)
        member_token = await sign_in(as_member, member.email)
        seen_by_reviewer = await as_reviewer.get(f"/ui/threads/{thread.id}")
        seen_by_member = await as_member.get(f"/ui/threads/{thread.id}")
        for response in (seen_by_reviewer, seen_by_member):
            assert response.status_code == 200, response.text
            assert_console_page(response)
            assert "Draft one" in response.text
            assert "Draft two" in response.text
        for control in (">Approve<", ">Reject<", ">Send back<", 'for="feedback">Feedback<'):
            assert control in seen_by_reviewer.text
            assert control not in seen_by_member.text
        # The control is hidden, and the request is refused anyway.
        refused = await as_member.post(
            f"/ui/threads/{thread.id}/decision",
            data={"csrf_token": member_token, "decision": "approve", "revision": "1"},
        )
        assert refused.status_code == 403, refused.text
        assert "review:write" in refused.text
    assert await decisions_on(db_session, thread.id) == 0


async def test_approve_publishes_and_offers_the_next_waiting_item(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, token = as_reviewer
    now = utcnow()
    first = await make_thread(reviewer.organization_id, created_at=now - timedelta(hours=2))
    second = await make_thread(reviewer.organization_id, created_at=now - timedelta(hours=1))
    response = await page.post(
        f"/ui/threads/{first.id}/decision",
        data={"csrf_token": token, "decision": "approve", "revision": "1", "feedback": ""},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/ui/threads/{first.id}?notice=approve"
    await db_session.refresh(first)
    assert first.status is ThreadStatus.published
    after = await page.get(response.headers["location"])
    assert "Approved: the drafts are published." in after.text
    assert f'href="/ui/threads/{second.id}">Next waiting item<' in after.text
    assert ">Approve<" not in after.text
    assert "by " + reviewer.full_name in after.text


async def test_a_thread_revised_meanwhile_refuses_the_decision_and_shows_the_new_drafts(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, token = as_reviewer
    thread = await make_thread(reviewer.organization_id, drafts=["The old text of the post"])
    thread.revision = 2
    await ReviewRevisionFactory.create_async(
        thread_id=thread.id, number=2, drafts=["The new text of this post"]
    )
    await db_session.flush()
    response = await page.post(
        f"/ui/threads/{thread.id}/decision",
        data={"csrf_token": token, "decision": "approve", "revision": "1"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith("?notice=revised")
    assert await decisions_on(db_session, thread.id) == 0
    shown = await page.get(response.headers["location"])
    assert "changed since you loaded it" in shown.text
    assert "Drafts of revision 2" in shown.text
    assert 'name="revision" value="2"' in shown.text
    # The word-level diff between revisions 1 and 2.
    assert "<del>old</del>" in shown.text
    assert "<ins>new</ins>" in shown.text
    assert "<del>the</del>" in shown.text
    assert "<ins>this</ins>" in shown.text


async def test_send_back_needs_feedback_and_records_it(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, token = as_reviewer
    thread = await make_thread(reviewer.organization_id)
    empty = await page.post(
        f"/ui/threads/{thread.id}/decision",
        data={"csrf_token": token, "decision": "edit", "revision": "1", "feedback": "  "},
    )
    assert empty.headers["location"].endswith("?notice=feedback-needed")
    assert await decisions_on(db_session, thread.id) == 0
    sent = await page.post(
        f"/ui/threads/{thread.id}/decision",
        data={"csrf_token": token, "decision": "edit", "revision": "1", "feedback": "Shorter"},
    )
    assert sent.headers["location"].endswith("?notice=edit")
    await db_session.refresh(thread)
    assert (thread.status, thread.edit_count) == (ThreadStatus.regenerating, 1)
    shown = await page.get(f"/ui/threads/{thread.id}")
    assert "being written" in shown.text
    assert "<blockquote>Shorter</blockquote>" in shown.text


async def test_a_decision_without_the_csrf_token_is_refused(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, _ = as_reviewer
    thread = await make_thread(reviewer.organization_id)
    for data in (
        {"decision": "approve", "revision": "1"},
        {"decision": "approve", "revision": "1", "csrf_token": "f" * 64},
    ):
        response = await page.post(f"/ui/threads/{thread.id}/decision", data=data)
        assert response.status_code == 403, response.text
        assert "security token" in response.text
    assert await decisions_on(db_session, thread.id) == 0
    await db_session.refresh(thread)
    assert thread.status is ThreadStatus.pending_review


async def test_another_organizations_thread_is_a_404_page(
    as_reviewer: tuple[httpx.AsyncClient, str], db_session: AsyncSession
) -> None:
    page, token = as_reviewer
    theirs = await make_thread((await make_user(Role.admin)).organization_id)
    shown = await page.get(f"/ui/threads/{theirs.id}")
    assert shown.status_code == 404, shown.text
    assert_console_page(shown)
    assert "Not found" in shown.text
    decided = await page.post(
        f"/ui/threads/{theirs.id}/decision",
        data={"csrf_token": token, "decision": "approve", "revision": "1"},
    )
    assert decided.status_code == 404, decided.text
    assert f"Thread {theirs.id} not found" in decided.text
    assert await decisions_on(db_session, theirs.id) == 0
    assert (await page.get("/ui/threads/not-a-uuid")).status_code == 404


async def test_sign_out_ends_the_login_even_for_a_copied_cookie(
    as_reviewer: tuple[httpx.AsyncClient, str],
) -> None:
    page, token = as_reviewer
    copied = page.cookies["tandem_console"]
    response = await page.post("/ui/logout", data={"csrf_token": token})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/login?notice=signed-out"
    assert (await page.get("/ui/inbox")).status_code == 303
    page.cookies.set("tandem_console", copied, path="/ui")
    assert (await page.get("/ui/inbox")).status_code == 303


async def test_a_deactivated_users_cookie_stops_working(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, _ = as_reviewer
    assert (await page.get("/ui/inbox")).status_code == 200
    reviewer.is_active = False
    await db_session.flush()
    response = await page.get("/ui/inbox")
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/ui/login")


async def test_a_lower_role_takes_effect_at_the_next_request(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, token = as_reviewer
    thread = await make_thread(reviewer.organization_id)
    assert ">Approve<" in (await page.get(f"/ui/threads/{thread.id}")).text
    reviewer.role = Role.member.value
    await db_session.flush()
    shown = await page.get(f"/ui/threads/{thread.id}")
    assert ">Approve<" not in shown.text
    refused = await page.post(
        f"/ui/threads/{thread.id}/decision",
        data={"csrf_token": token, "decision": "approve", "revision": "1"},
    )
    assert refused.status_code == 403, refused.text
    assert "Missing required scope: review:write" in refused.text
    assert await decisions_on(db_session, thread.id) == 0
    await db_session.refresh(thread)
    assert thread.status is ThreadStatus.pending_review


async def test_a_thread_being_written_says_so(
    as_reviewer: tuple[httpx.AsyncClient, str], reviewer: User, db_session: AsyncSession
) -> None:
    page, _ = as_reviewer
    thread = await make_thread(reviewer.organization_id, status=ThreadStatus.generating, revision=0)
    shown = await page.get(f"/ui/threads/{thread.id}")
    assert "Drafts for revision 1 are being written" in shown.text
    assert 'data-poll="1000"' in shown.text
    assert ">Approve<" not in shown.text
    assert isinstance(await db_session.get(ReviewThread, thread.id), ReviewThread)


async def test_sign_in_attempts_share_the_apis_rate_limit(
    client: httpx.AsyncClient, reviewer: User
) -> None:
    statuses = []
    for _ in range(6):
        page = await client.get("/ui/login")
        response = await client.post(
            "/ui/login",
            data={
                "email": reviewer.email,
                "password": "not the password",
                "csrf_token": csrf_of(page.text),
            },
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert "Rate limit exceeded" in response.text
    assert "tandem_console" not in client.cookies


async def test_the_console_root_opens_the_inbox(
    as_reviewer: tuple[httpx.AsyncClient, str],
) -> None:
    page, _ = as_reviewer
    for path in ("/ui", "/ui/"):
        response = await page.get(path)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/ui/inbox"
