"""The web console in a real browser: Playwright drives Debian's Chromium against a real
`tandem serve` (SQLite, embedded executor, the offline model) on 127.0.0.1.

Controls are found by role and label, as a person finds them; every wait is an `expect`.
Each page visited is checked with axe-core: no serious or critical violation. A failing
test leaves a screenshot and the HTML of each open page in its tmp_path. With
TANDEM_CONSOLE_SCREENSHOTS=<dir>, the main pages are also saved there (docs/console/).
"""

import os
import re
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tandem.testing import wait_for as wait_until_done
from tests.conftest import skip_or_fail
from tests.e2e.conftest import (
    CALL_FAILED,
    ServerProcess,
    clean_environment,
    tandem_command,
    wait_until_serving,
)

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "correct horse battery"
SLOW = 60_000  # ms: drafts written, a schedule solved, a job run by the embedded executor
StartServer = Callable[..., ServerProcess]
WaitUntil = Callable[..., Awaitable[Any]]


@pytest.fixture
async def chromium(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            if request.node.stash.get(CALL_FAILED, False):
                await _keep_evidence(browser, tmp_path)
            await browser.close()


async def _keep_evidence(browser: Browser, directory: Path) -> None:
    for c, context in enumerate(browser.contexts):
        for p, page in enumerate(context.pages):
            stem = directory / f"failure-context{c}-page{p}"
            await page.screenshot(path=f"{stem}.png", full_page=True)
            Path(f"{stem}.html").write_text(await page.content(), encoding="utf-8")
    print(f"Browser evidence saved in {directory}")


async def new_page(browser: Browser, width: int = 1280) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    return await context.new_page()


async def assert_accessible(page: Page) -> None:
    """axe-core on the page as it is: no serious or critical violation."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert not bad, f"{page.url}:\n" + "\n".join(bad)


async def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get("TANDEM_CONSOLE_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


async def sign_in(page: Page, base_url: str, email: str, start: str = "/ui/inbox") -> None:
    await page.goto(base_url + start)
    await expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    await assert_accessible(page)
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(re.escape(start) + "$"))


class Api:
    """The HTTP API, for what the console does not do itself (accounts, content, setup)."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    async def call(self, method: str, url: str, expected: int, **kwargs: Any) -> Any:
        response = await self.client.request(method, url, headers=self.headers, **kwargs)
        assert response.status_code == expected, response.text
        return response.json() if response.content else None


@pytest.fixture
async def serve(
    start_server: StartServer, wait_until: WaitUntil
) -> Callable[..., Awaitable[ServerProcess]]:
    async def started(**env: str) -> ServerProcess:
        server = start_server(env=clean_environment(**env))
        await wait_until_serving(server, wait_until)
        return server

    return started


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """One `tandem serve` on defaults for the tests that need nothing special (each signs up
    an organization of its own): a server start is the slowest step of these tests. Its log
    goes to a file, since a pipe nobody reads would fill up with the pages' polling."""
    workdir = tmp_path_factory.mktemp("console-serve")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (workdir / "serve.log").open("w") as log:
        process = subprocess.Popen(
            tandem_command("serve", "--host", "127.0.0.1", "--port", str(port)),
            cwd=workdir,
            env=clean_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    started = ServerProcess(process, f"http://127.0.0.1:{port}", workdir)
    try:
        await wait_until_serving(started, wait_until_done)
        yield started
    finally:
        started.stop()


async def register(base_url: str, email: str) -> Api:
    client = httpx.AsyncClient(base_url=base_url, timeout=30.0)
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Lee Lead"},
    )
    assert response.status_code == 201, response.text
    return Api(client, {"Authorization": f"Bearer {response.json()['access_token']}"})


async def content_thread(api: Api, wait_until: WaitUntil) -> str:
    """A content thread whose two drafts wait for review."""
    accepted = await api.call(
        "POST",
        "/api/content/create",
        202,
        json={"topics": ["remote work"], "platform": "linkedin", "count": 2, "tone": "casual"},
    )
    thread_id: str = accepted["thread_id"]

    async def waiting() -> bool:
        thread = await api.call("GET", f"/api/hitl/{thread_id}", 200)
        assert thread["status"] != "failed", thread
        return bool(thread["status"] == "pending_review")

    await wait_until(waiting, timeout=60)
    return thread_id


async def test_review_send_back_then_approve(
    server: ServerProcess, chromium: Browser, wait_until: WaitUntil
) -> None:
    api = await register(server.base_url, "reviewer@review.example.com")
    await api.call(
        "POST",
        "/api/content/create",
        202,
        json={"topics": ["remote work", "rituals"], "platform": "linkedin", "count": 2},
    )
    page = await new_page(chromium)
    await sign_in(page, server.base_url, "reviewer@review.example.com")
    # The drafts are written in the background: the item appears without a reload.
    item = page.get_by_role("link", name=re.compile("linkedin"))
    await expect(item).to_be_visible(timeout=SLOW)
    await expect(page.get_by_text(re.compile(r"1 waiting for a decision"))).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "inbox")
    await page.keyboard.press("j")
    await expect(item).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/ui/threads/"))
    await expect(page.get_by_role("heading", name="Drafts of revision 1")).to_be_visible()
    await assert_accessible(page)

    await page.get_by_label("Feedback").fill("Mention async updates")
    await page.get_by_role("button", name="Send back").click()
    await expect(page.get_by_text("Sent back with your feedback")).to_be_visible()
    # Revision 2 arrives without a reload, with what changed.
    await expect(page.get_by_role("heading", name="Drafts of revision 2")).to_be_visible(
        timeout=SLOW
    )
    await expect(page.get_by_role("heading", name="Revision 1 → 2")).to_be_visible()
    await expect(page.locator("ins").first).to_be_visible()
    await expect(page.get_by_text("Mention async updates").first).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "thread")
    narrow = await new_page(chromium, width=390)
    await narrow.context.add_cookies(await page.context.cookies())
    await narrow.goto(page.url)
    await expect(narrow.get_by_role("button", name="Approve")).to_be_visible()
    await assert_accessible(narrow)
    await screenshot(narrow, "thread-390px")

    await page.get_by_role("button", name="Approve").click()
    await expect(page.get_by_text("Approved: the drafts are published.")).to_be_visible()
    await expect(page.get_by_role("heading", name="Published")).to_be_visible()
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    published = await api.call("GET", "/api/content", 200, params={"status": "published"})
    assert published["count"] == 2


async def test_two_reviewers_decide_the_same_thread_one_wins(
    server: ServerProcess, chromium: Browser, wait_until: WaitUntil
) -> None:
    api = await register(server.base_url, "lead@two.example.com")
    await api.call(
        "POST",
        "/api/v1/users",
        201,
        json={
            "email": "second@two.example.com",
            "password": PASSWORD,
            "full_name": "Sam Second",
            "role": "reviewer",
        },
    )
    thread_id = await content_thread(api, wait_until)
    first, second = await new_page(chromium), await new_page(chromium)
    url = f"/ui/threads/{thread_id}"
    await sign_in(first, server.base_url, "lead@two.example.com", start=url)
    await sign_in(second, server.base_url, "second@two.example.com", start=url)
    for page in (first, second):
        await expect(page.get_by_role("button", name="Approve")).to_be_visible()

    await first.get_by_role("button", name="Approve").click()
    await expect(first.get_by_text("Approved: the drafts are published.")).to_be_visible()
    await second.get_by_label("Feedback").fill("Not this one")
    await second.get_by_role("button", name="Reject").click()
    await expect(second.get_by_text("This thread changed since you loaded it")).to_be_visible()
    await expect(second.locator(".badge-published").first).to_be_visible()
    await expect(second.get_by_role("button", name="Reject")).to_have_count(0)
    await expect(second.get_by_text("Approved revision 1 by Lee Lead")).to_be_visible()
    await assert_accessible(second)
    thread = await api.call("GET", f"/api/hitl/{thread_id}", 200)
    assert thread["status"] == "published"
    assert [d["decision"] for d in thread["decisions"]] == ["approve"]


async def test_a_dead_job_retried_from_its_page_succeeds(
    serve: Callable[..., Awaitable[ServerProcess]],
    chromium: Browser,
    wait_until: WaitUntil,
    free_tcp_port_factory: Callable[[], int],
) -> None:
    # First the model endpoint is down (nothing listens there): the drafts' job dies.
    broken = await serve(
        TANDEM_LLM_BASE_URL=f"http://127.0.0.1:{free_tcp_port_factory()}/v1",
        TANDEM_LLM_API_KEY="unused",
        TANDEM_LLM_MODEL="unused",
        TANDEM_LLM_MAX_RETRIES="0",
        TANDEM_JOB_RETRY_BASE_SECONDS="0.05",
    )
    api = await register(broken.base_url, "lead@example.com")
    accepted = await api.call(
        "POST", "/api/content/create", 202, json={"topics": ["tea"], "platform": "blog"}
    )

    async def dead() -> dict[str, Any] | None:
        jobs = await api.call("GET", "/api/v1/jobs", 200, params={"status": "dead"})
        return jobs["items"][0] if jobs["items"] else None

    job = await wait_until(dead, timeout=60)
    broken.stop()
    # Then it is fixed (here: back to the offline model) and the job is retried.
    fixed = await serve()
    page = await new_page(chromium)
    await sign_in(page, fixed.base_url, "lead@example.com", start="/ui/jobs?status=dead")
    await expect(page.get_by_text("dead 1")).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "jobs")
    await page.get_by_role("link", name=job["id"][:8]).click()
    await expect(page.get_by_role("heading", name="Job content.generate")).to_be_visible()
    await expect(page.get_by_text("Connection").first).to_be_visible()
    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_text("The job was sent back to the queue.")).to_be_visible()
    await expect(page.locator(".badge-succeeded").first).to_be_visible(timeout=SLOW)
    await expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    await assert_accessible(page)
    await screenshot(page, "job")
    fixed_api = Api(httpx.AsyncClient(base_url=fixed.base_url, timeout=30.0), api.headers)
    thread = await fixed_api.call("GET", f"/api/hitl/{accepted['thread_id']}", 200)
    assert thread["status"] == "pending_review"


async def test_generate_a_schedule_then_a_manual_assignment_is_marked(
    server: ServerProcess, chromium: Browser
) -> None:
    api = await register(server.base_url, "lead@schedule.example.com")
    people = {
        name: await api.call(
            "POST",
            "/api/v1/people",
            201,
            json={"name": name, "email": f"{name.lower()}@example.com", "type": "resident"}
            | {"pgy_level": pgy},
        )
        for name, pgy in (("Ada", 2), ("Bob", 2), ("Cyd", 1))
    }
    await api.call(
        "POST",
        "/api/v1/people",
        201,
        json={"name": "Fay", "email": "fay@example.com", "type": "faculty"},
    )
    await api.call(
        "POST",
        f"/api/v1/people/{people['Ada']['id']}/absences",
        201,
        json={"start_date": "2027-03-02", "end_date": "2027-03-02", "kind": "leave"},
    )
    await api.call(
        "POST",
        "/api/v1/rotations",
        201,
        json={"name": "Clinic", "kind": "clinic", "min_residents": 1, "max_residents": 1},
    )
    span = {"start_date": "2027-03-01", "end_date": "2027-03-03"}
    await api.call("POST", "/api/v1/blocks/generate", 201, json=span)
    schedule = await api.call("POST", "/api/v1/schedules", 201, json={"name": "March"} | span)

    page = await new_page(chromium)
    await sign_in(page, server.base_url, "lead@schedule.example.com", start="/ui/schedules")
    await assert_accessible(page)
    await page.get_by_role("link", name="March").click()
    await expect(page.get_by_role("heading", name="March")).to_be_visible()
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator(".badge-generated")).to_be_visible(timeout=SLOW)
    await expect(page.get_by_text("Solver statistics")).to_be_visible()
    grid = page.get_by_role("region", name="Grid")
    await expect(grid.get_by_role("cell", name="CLI").first).to_be_visible()
    await assert_accessible(page)

    # Ada is on leave on 2 March: an assignment then breaks the absence rule.
    await page.get_by_label("Person").select_option(label="Ada (PGY-2)")
    await page.get_by_label("Block").select_option(label="2027-03-02 AM")
    await page.get_by_label("Rotation").select_option(label="Clinic")
    await page.get_by_role("button", name="Add assignment").click()
    await expect(page.get_by_text("Assignment added.")).to_be_visible()
    # Columns: Mon AM, Mon PM, Tue AM, ...
    marked = page.locator(f'tr[data-person="{people["Ada"]["id"]}"] td').nth(2)
    await expect(marked).to_have_class(re.compile(r"sev-(critical|high)"))
    await expect(marked).to_contain_text("absence")
    await expect(page.get_by_role("complementary").get_by_text("absence").first).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "schedule")
    validation = await api.call("GET", f"/api/v1/schedules/{schedule['id']}/validation", 200)
    assert "absence" in {v["rule"] for v in validation["violations"]}


async def test_agents_page_runs_an_agent_and_error_pages_are_accessible(
    server: ServerProcess, chromium: Browser
) -> None:
    await register(server.base_url, "lead@agents.example.com")
    page = await new_page(chromium)
    await sign_in(page, server.base_url, "lead@agents.example.com", start="/ui/agents")
    await page.get_by_label("Agent", exact=True).select_option("summarizer")
    await page.get_by_label("Input").fill(
        "Trams run every ten minutes. The city added night trams last year. "
        "Night trams carry nurses and bakers to work."
    )
    await page.get_by_role("button", name="Run").click()
    await expect(page.get_by_role("heading", name="Output")).to_be_visible(timeout=SLOW)
    await expect(page.get_by_role("cell", name="completed")).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "agents")
    await page.goto(server.base_url + "/ui/jobs/00000000-0000-0000-0000-000000000000")
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await assert_accessible(page)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    await page.goto(server.base_url + "/ui/agents")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next="))


async def test_a_forgotten_password_is_reset_from_the_sign_in_page(
    server: ServerProcess, chromium: Browser
) -> None:
    """Issue 13, finding 3: without SMTP the mail waits in the outbox table, where the link is
    read; the pages it leads through are accessible."""
    email = "lee@reset.example.com"
    await register(server.base_url, email)
    page = await new_page(chromium)
    await page.goto(server.base_url + "/ui/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await assert_accessible(page)
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Send link").click()
    await expect(page.get_by_role("status")).to_contain_text("a link to reset its password")

    with sqlite3.connect(server.workdir / "tandem.db") as db:
        [(body,)] = db.execute(
            "SELECT body FROM outbox_messages WHERE recipient = ? AND subject LIKE 'Reset%'",
            (email,),
        ).fetchall()
    match = re.search(r"https?://[^/\s]+(/ui/reset\?token=[A-Za-z0-9_-]+)", body)
    assert match, body
    await page.goto(server.base_url + match.group(1))
    await assert_accessible(page)
    new_password = "a brand new long password"
    await page.get_by_label("New password").fill(new_password)
    await page.get_by_role("button", name="Set password").click()
    await expect(page.get_by_text("every earlier sign-in has ended")).to_be_visible()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(new_password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/ui/inbox$"))
