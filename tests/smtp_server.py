"""A real SMTP server (aiosmtpd) on 127.0.0.1, keeping what it receives.

    async def test_x(smtp_server: SmtpServer) -> None:
        ...  # send to smtp_server.host:smtp_server.port
        assert smtp_server.received[0].subject == "Hello"

`smtp_server.refuse_with = "451 4.3.0 Try again later"` makes it answer every message with
that reply (a 4xx or 5xx) until it is set back to None. `smtp_server.hold_replies()` makes it
keep messages but not acknowledge them until `release_replies()`: the sender cannot know
they arrived (a process dying mid-delivery).
"""

import asyncio
import email
import email.policy
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# aiosmtpd logs every connection at INFO from its own thread, which can outlive pytest's
# capture of the test that started it ("I/O operation on closed file" in the run's output).
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass(frozen=True)
class ReceivedEmail:
    sender: str
    recipients: list[str]
    subject: str
    body: str
    headers: dict[str, str]


class SmtpServer:
    """The aiosmtpd handler; the server runs in the Controller's thread."""

    host = "127.0.0.1"

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[ReceivedEmail] = []
        self.refused = 0
        self.refuse_with: str | None = None
        self._released = threading.Event()
        self._released.set()

    def hold_replies(self) -> None:
        self._released.clear()

    def release_replies(self) -> None:
        self._released.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_with is not None:
            self.refused += 1
            return self.refuse_with
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        content = message.get_content()
        self.received.append(
            ReceivedEmail(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                subject=str(message["Subject"]),
                body=content.replace("\r\n", "\n"),  # the wire uses CRLF
                headers={key: str(value) for key, value in message.items()},
            )
        )
        if not self._released.is_set():
            # Waits in a worker thread so that the server's loop keeps serving others.
            await asyncio.get_running_loop().run_in_executor(None, self._released.wait)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(free_tcp_port_factory: Callable[[], int]) -> Iterator[SmtpServer]:
    """A fresh server per test, so no test sees another's messages."""
    server = SmtpServer(free_tcp_port_factory())
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        server.release_replies()
        controller.stop()
