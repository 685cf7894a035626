"""How an e-mail leaves Tandem: SMTP when a host is configured, otherwise the log."""

import logging
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiosmtplib

from tandem.notifications.models import OutboxStatus
from tandem.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingEmail:
    """What a transport needs of an outbox row, detached from any session."""

    id: uuid.UUID
    recipient: str
    subject: str
    body: str


class Transport(Protocol):
    # The status an outbox row takes once this transport has delivered it.
    delivered_status: OutboxStatus

    async def send(self, email: OutgoingEmail) -> None:
        """Delivers the e-mail or raises; the outbox retries on any exception."""


def compose(email: OutgoingEmail, *, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.recipient
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False)
    # Stable across retries: if a delivery is repeated (see dispatcher), mail clients can
    # recognise the duplicate.
    domain = sender.rpartition("@")[2] or "tandem.invalid"
    message["Message-ID"] = f"<{email.id}@{domain}>"
    message.set_content(email.body)
    return message


class SmtpTransport:
    delivered_status = OutboxStatus.sent

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = False,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.start_tls = start_tls
        self.timeout_seconds = timeout_seconds

    async def send(self, email: OutgoingEmail) -> None:
        await aiosmtplib.send(
            compose(email, sender=self.sender),
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            # Explicit: True requires STARTTLS, False never tries it (no silent fallback).
            start_tls=self.start_tls,
            timeout=self.timeout_seconds,
        )


class LogTransport:
    """No SMTP configured: the e-mail goes to the log (and stays in the outbox)."""

    delivered_status = OutboxStatus.logged

    async def send(self, email: OutgoingEmail) -> None:
        log.info(
            "E-mail to %s: %s\n%s",
            email.recipient,
            email.subject,
            email.body,
            extra={"outbox_message_id": str(email.id)},
        )


def transport_from_settings(settings: Settings) -> Transport:
    if not settings.smtp_host:
        return LogTransport()
    return SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        username=settings.smtp_user,
        password=settings.smtp_password,
        start_tls=settings.smtp_starttls,
        timeout_seconds=settings.smtp_timeout_seconds,
    )
