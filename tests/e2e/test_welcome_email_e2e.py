"""A real `tandem serve` e-mails a new user through a real SMTP server on 127.0.0.1."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, clean_environment, wait_until_serving
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


async def test_registration_and_user_creation_send_welcome_emails(
    start_server: Callable[..., ServerProcess],
    wait_until: Callable[..., Awaitable[Any]],
    smtp_server: SmtpServer,
) -> None:
    env = clean_environment(
        TANDEM_SMTP_HOST=smtp_server.host,
        TANDEM_SMTP_PORT=str(smtp_server.port),
        TANDEM_SMTP_FROM="tandem@example.org",
        TANDEM_OUTBOX_POLL_SECONDS="0.2",
    )
    server = start_server(env=env)
    await wait_until_serving(server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        registered = await client.post(
            "/api/v1/auth/register",
            json={
                "email": "ann@example.com",
                "password": "a long enough password",
                "full_name": "Ann Admin",
                "organization_name": "Acme",
            },
        )
        assert registered.status_code == 201, registered.text
        token = registered.json()["access_token"]
        created = await client.post(
            "/api/v1/users",
            json={"email": "bob@example.com", "password": "bobs long password", "full_name": "Bob"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        assert (created.json()["email"], created.json()["role"]) == ("bob@example.com", "member")

    await wait_until(lambda: len(smtp_server.received) >= 2, timeout=20)
    by_recipient = {tuple(m.recipients): m for m in smtp_server.received}
    assert set(by_recipient) == {("ann@example.com",), ("bob@example.com",)}
    welcome = by_recipient[("ann@example.com",)]
    assert welcome.sender == "tandem@example.org"
    assert "Welcome" in welcome.subject
    assert "Ann Admin" in welcome.body
    assert "Acme" not in welcome.subject + welcome.body, "no organization name (issue 13)"
    assert "Bob" in by_recipient[("bob@example.com",)].body
    assert len(smtp_server.received) == 2, "each welcome e-mail is sent once"
