"""Issue 13, finding 3, end to end: in production (invitation only, verification required)
accounts come from invitations and passwords are reset through links that a real SMTP
server receives, pointing at TANDEM_PUBLIC_URL."""

import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tandem.app import create_app
from tandem.identity.models import Organization, User
from tandem.identity.scopes import Role
from tandem.identity.security import hash_password
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.smtp_server import ReceivedEmail, SmtpServer

pytestmark = pytest.mark.anyio

PUBLIC_URL = "https://tandem.example.org"
ADMIN_PASSWORD = "the admin's long password"
WaitUntil = Callable[..., Awaitable[Any]]


async def _admin(db: CommittedDatabase) -> str:
    async with db.sessionmaker() as session, session.begin():
        organization = Organization(name="Acme")
        session.add(organization)
        await session.flush()
        session.add(
            User(
                organization_id=organization.id,
                email="admin@example.com",
                password_hash=await hash_password(ADMIN_PASSWORD),
                full_name="Admin",
                role=Role.admin.value,
            )
        )
    return "admin@example.com"


def _token(mail: ReceivedEmail, page: str) -> str:
    match = re.search(re.escape(f"{PUBLIC_URL}/ui/{page}?token=") + r"([A-Za-z0-9_-]+)", mail.body)
    assert match, mail.body
    return match.group(1)


async def test_production_accounts_through_mailed_links(
    committed_db: CommittedDatabase,
    smtp_server: SmtpServer,
    tmp_path: Path,
    wait_until: WaitUntil,
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="production",
        jwt_secret=secrets.token_urlsafe(48),
        database_url=committed_db.url,
        data_dir=tmp_path,
        public_url=PUBLIC_URL,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        outbox_poll_seconds=0.05,
        worker_enabled=False,
    )
    admin_email = await _admin(committed_db)

    async def mail_to(address: str, count: int = 1) -> ReceivedEmail:
        def received() -> list[ReceivedEmail]:
            mails = [m for m in smtp_server.received if address in m.recipients]
            return mails if len(mails) >= count else []

        return (await wait_until(received, timeout=10))[-1]  # type: ignore[no-any-return]

    async with running(create_app(settings)) as client:
        registration = {"email": "x@example.com", "password": "a long password!", "full_name": "X"}
        refused = await client.post("/api/v1/auth/register", json=registration)
        assert refused.status_code == 403, refused.text
        assert refused.json() == {
            "detail": "Registration is by invitation only: "
            "ask an admin of your organization to invite you"
        }

        login = {"email": admin_email, "password": ADMIN_PASSWORD}
        admin = (await client.post("/api/v1/auth/login", json=login)).json()
        invited = await client.post(
            "/api/v1/invitations",
            json={"email": "guest@example.com", "role": "member"},
            headers={"Authorization": f"Bearer {admin['access_token']}"},
        )
        assert invited.status_code == 201, invited.text
        invitation = await mail_to("guest@example.com")
        assert invitation.subject == "You are invited to Tandem"
        accept = {
            "token": _token(invitation, "accept-invite"),
            "password": "the guest's first password",
            "full_name": "Guest",
        }
        accepted = await client.post("/api/v1/auth/accept-invite", json=accept)
        assert accepted.status_code == 201, accepted.text
        guest = {"Authorization": f"Bearer {accepted.json()['access_token']}"}
        projects = await client.get("/api/v1/projects", headers=guest)
        assert projects.status_code == 200, "an invited address needs no verification"

        reset = await client.post(
            "/api/v1/auth/password-reset", json={"email": "guest@example.com"}
        )
        assert reset.status_code == 202, reset.text
        assert reset.json() == {
            "detail": "If an account uses this address, a link to reset its password is on its way"
        }
        mail = await mail_to("guest@example.com", count=2)
        assert mail.subject == "Reset your Tandem password"
        confirm = {"token": _token(mail, "reset"), "password": "the guest's second password"}
        done = await client.post("/api/v1/auth/password-reset/confirm", json=confirm)
        assert done.status_code == 204, done.text
        assert (await client.get("/api/v1/projects", headers=guest)).status_code == 401
        again = {"email": "guest@example.com", "password": "the guest's second password"}
        assert (await client.post("/api/v1/auth/login", json=again)).status_code == 200
