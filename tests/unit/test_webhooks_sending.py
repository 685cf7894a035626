"""The address check runs before any connection: forbidden addresses are refused without a
packet sent (the client's send fails the test if it is ever reached)."""

from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tandem.webhooks.sending import AddressRefused, encode, resolve, send, sign
from tandem.webhooks.service import new_secret

pytestmark = pytest.mark.anyio

FORBIDDEN = [
    pytest.param("http://10.0.0.1/hook", id="private-10"),
    pytest.param("http://10.255.3.4:8080/hook", id="private-10-port"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="cloud-metadata"),
    pytest.param("http://192.168.1.10/hook", id="private-192-168"),
    pytest.param("http://172.16.0.5/hook", id="private-172-16"),
    pytest.param("http://127.0.0.1:9/hook", id="loopback"),
    pytest.param("http://localhost:9/hook", id="loopback-by-name"),
    pytest.param("http://[::1]:9/hook", id="loopback-v6"),
    pytest.param("http://[::ffff:10.0.0.1]/hook", id="v4-mapped-private"),
    pytest.param("http://[fe80::1]/hook", id="link-local-v6"),
    pytest.param("http://100.64.0.1/hook", id="shared-address-space"),
    pytest.param("http://0.0.0.0:9/hook", id="unspecified"),
]


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a request was sent to a forbidden address")

    monkeypatch.setattr(httpx.AsyncClient, "send", refuse)


@pytest.mark.parametrize("url", FORBIDDEN)
@pytest.mark.usefixtures("no_connections")
async def test_a_forbidden_address_is_refused_before_connecting(url: str) -> None:
    outcome = await send(
        url,
        new_secret(),
        "msg_1",
        b"{}",
        timestamp=1,
        deadline_seconds=1,
        allow_private=False,
    )
    assert not outcome.ok
    assert outcome.status_code is None
    assert outcome.error is not None
    assert outcome.error.startswith("Refused: ")
    assert "TANDEM_WEBHOOK_ALLOW_PRIVATE=true" in outcome.error


async def test_allowing_private_addresses_lets_loopback_through() -> None:
    assert str(await resolve("127.0.0.1", 80, allow_private=True)) == "127.0.0.1"
    with pytest.raises(AddressRefused):
        await resolve("127.0.0.1", 80, allow_private=False)


def test_the_signature_verifies_with_an_independent_implementation() -> None:
    secret = new_secret()
    body = encode({"type": "ping", "timestamp": "2026-11-30T12:00:00+00:00", "data": {}})
    import time

    now = int(time.time())
    headers = {
        "webhook-id": "msg_abc",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "msg_abc", now, body),
    }
    assert Webhook(secret).verify(body, headers)["type"] == "ping"
    tampered = body.replace(b"ping", b"pong")
    with pytest.raises(Exception, match="No matching signature found"):
        Webhook(secret).verify(tampered, headers)
