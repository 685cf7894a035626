"""One HTTP attempt of a webhook delivery: Standard Webhooks signature, the address checked
before any connection, no redirects, a deadline, and only a short excerpt of the answer.

The host is resolved once and checked (loopback, private, link-local and other non-global
addresses are refused unless `TANDEM_WEBHOOK_ALLOW_PRIVATE=true`); the request then goes to
that very address (Host header and TLS server name kept), so a second DNS answer cannot
point it elsewhere."""

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx

EXCERPT_CHARS = 500
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(Exception):
    """The URL's host resolves to an address webhooks may not reach."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    excerpt: str | None = None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _forbidden(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


async def resolve(host: str, port: int, *, allow_private: bool) -> IPAddress:
    """The address to connect to; AddressRefused when any address the host has is forbidden
    (an attacker's name may answer a public and a private address)."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise AddressRefused(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"{host} has no address")
    if not allow_private:
        for address in addresses:
            if _forbidden(address):
                raise AddressRefused(
                    f"{host} resolves to {address}, a loopback, private or link-local address "
                    "(set TANDEM_WEBHOOK_ALLOW_PRIVATE=true to allow)"
                )
    return addresses[0]


async def send(
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    *,
    timestamp: int,
    deadline_seconds: float,
    allow_private: bool,
) -> Outcome:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = await resolve(host, port, allow_private=allow_private)
    except AddressRefused as exc:
        return Outcome(ok=False, error=f"Refused: {exc}")
    literal = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
    headers = {
        "Host": parts.netloc.rsplit("@", 1)[-1],
        "Content-Type": "application/json",
        "User-Agent": "Tandem-Webhooks",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }
    timeout = deadline_seconds
    try:
        with anyio.fail_after(timeout):
            async with httpx.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=timeout
            ) as client:
                request = client.build_request(
                    "POST",
                    pinned,
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": host},
                )
                response = await client.send(request, stream=True)
                try:
                    excerpt = await _excerpt(response)
                finally:
                    await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(ok=False, error=f"Timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    ok = 200 <= response.status_code < 300
    return Outcome(
        ok=ok,
        status_code=response.status_code,
        error=None if ok else f"Answered {response.status_code}",
        excerpt=excerpt,
    )


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer, never the whole of a large one."""
    received = b""
    async for chunk in response.aiter_raw():
        received += chunk
        if len(received) >= EXCERPT_CHARS * 4:
            break
    return received.decode(errors="replace")[:EXCERPT_CHARS]
