"""Fixtures for the real Redis at TANDEM_TEST_REDIS_URL (CI: redis://127.0.0.1:6379/15).

Tests share one Redis database, also across `pytest -n 2` workers: give every test its own
keys (`redis_key_prefix`, or a unique scope) instead of flushing the database.
"""

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from tests.conftest import skip_or_fail


def redis_answers(url: str) -> str | None:
    """None when the server at `url` answers an inline PING; otherwise why not.

    Plain sockets rather than an async client: the fixture stays synchronous, so tests may
    also reach it through `request.getfixturevalue`.
    """
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3
        ) as connection:
            connection.sendall(b"PING\r\n")
            reply = connection.recv(64)
    except OSError as exc:
        return repr(exc)
    # +PONG, or -NOAUTH from a server that wants a password: either way Redis is there.
    return None if reply.startswith((b"+", b"-")) else f"unexpected reply {reply!r}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TANDEM_TEST_REDIS_URL")
    if not url:
        skip_or_fail("TANDEM_TEST_REDIS_URL is not set")
    assert url is not None
    if (problem := redis_answers(url)) is not None:
        skip_or_fail(f"Redis at TANDEM_TEST_REDIS_URL does not answer: {problem}")
    return url


@pytest.fixture
def redis_key_prefix() -> str:
    """A key namespace of this test's own, so that tests never share a budget."""
    return f"tandem-test-{uuid.uuid4().hex}"
