"""Notifications without I/O: retry backoff, templates, composing and choosing a transport."""

import logging
import uuid
from datetime import timedelta

import pytest

from tandem.identity.emails import name_for_mail, welcome_email
from tandem.notifications.models import OutboxStatus
from tandem.notifications.transport import (
    LogTransport,
    OutgoingEmail,
    SmtpTransport,
    compose,
    transport_from_settings,
)
from tandem.retry import RetryPolicy
from tandem.settings import Settings

EMAIL = OutgoingEmail(
    id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    recipient="ada@example.com",
    subject="Hello",
    body="First line\nSecond line\n",
)


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [
        pytest.param(1, 30, id="first-failure-waits-the-base"),
        pytest.param(2, 60, id="second-doubles"),
        pytest.param(4, 240, id="fourth-is-eight-times"),
        pytest.param(7, 1920, id="seventh-below-the-cap"),
        pytest.param(8, 3600, id="eighth-capped-at-an-hour"),
        pytest.param(10_000, 3600, id="huge-count-capped-without-overflow"),
    ],
)
def test_retry_delay_doubles_from_the_base_up_to_an_hour(attempts: int, seconds: int) -> None:
    policy = RetryPolicy(max_attempts=8, base_seconds=30)
    assert policy.delay(attempts) == timedelta(seconds=seconds)


def test_retry_delay_honours_a_custom_cap() -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=1.5, cap_seconds=5)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [1.5, 3.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("attempts", "gives_up"),
    [
        pytest.param(1, False, id="first-attempt"),
        pytest.param(2, False, id="one-before-the-last"),
        pytest.param(3, True, id="the-last-attempt"),
        pytest.param(4, True, id="past-the-last"),
    ],
)
def test_retry_policy_gives_up_after_max_attempts(attempts: int, gives_up: bool) -> None:
    assert RetryPolicy(max_attempts=3, base_seconds=30).gives_up(attempts) is gives_up


def test_welcome_email_greets_the_user_by_name_only() -> None:
    subject, body = welcome_email(full_name="Ada Lovelace")
    assert subject == "Welcome to Tandem"
    assert body.startswith("Hello Ada Lovelace,\n")


@pytest.mark.parametrize(
    ("full_name", "shown"),
    [
        pytest.param("Ada\r\nBcc: x@evil", "Ada Bcc xevil", id="header-injection"),
        pytest.param("Zoë O'Brien-Łukasz", "Zoë O'Brien-Łukasz", id="letters-kept"),
        pytest.param("Eve\x1b[31m", "Evem", id="terminal-escape"),
        pytest.param("Call 555 0100 now https://x.example", "Call now httpsxexample", id="link"),
        pytest.param("A very long name that goes on and on", "A very long name that…", id="long"),
        pytest.param("1234 !!!", "there", id="nothing-left"),
    ],
)
def test_the_name_in_a_mail_is_reduced_to_letters_and_shortened(full_name: str, shown: str) -> None:
    assert name_for_mail(full_name) == shown
    _subject, body = welcome_email(full_name=full_name)
    assert body.startswith(f"Hello {shown},\n")
    assert "\r" not in body


def test_compose_builds_headers_and_a_stable_message_id() -> None:
    message = compose(EMAIL, sender="tandem@example.org")
    assert message["From"] == "tandem@example.org"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == f"<{EMAIL.id}@example.org>"
    assert message["Date"]
    assert message.get_content() == "First line\nSecond line\n"


def test_no_smtp_host_chooses_the_log() -> None:
    settings = Settings(_env_file=None, smtp_host=None)  # type: ignore[call-arg]
    transport = transport_from_settings(settings)
    assert isinstance(transport, LogTransport)
    assert transport.delivered_status is OutboxStatus.logged


def test_smtp_host_chooses_smtp_with_every_setting() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        smtp_host="mail.example.org",
        smtp_port=587,
        smtp_from="noreply@example.org",
        smtp_user="tandem",
        smtp_password="hunter2-but-longer",
        smtp_starttls=True,
        smtp_timeout_seconds=4.5,
    )
    transport = transport_from_settings(settings)
    assert isinstance(transport, SmtpTransport)
    assert transport.delivered_status is OutboxStatus.sent
    assert vars(transport) == {
        "host": "mail.example.org",
        "port": 587,
        "sender": "noreply@example.org",
        "username": "tandem",
        "password": "hunter2-but-longer",
        "start_tls": True,
        "timeout_seconds": 4.5,
    }


@pytest.mark.anyio
async def test_log_transport_writes_the_whole_message_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="tandem.notifications"):
        await LogTransport().send(EMAIL)
    [record] = [r for r in caplog.records if r.name.startswith("tandem.notifications")]
    assert record.levelno == logging.INFO
    assert record.getMessage() == "E-mail to ada@example.com: Hello\nFirst line\nSecond line\n"
