"""Speaking to the console as a browser would, through the ASGI app: one cookie jar per
client, the CSRF token read from the page's hidden field."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from tandem.identity.models import User
from tests.factories import TEST_PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)", re.IGNORECASE)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, f"no CSRF field in the page:\n{html[:2000]}"
    return found.group(1)


def assert_console_page(response: httpx.Response) -> None:
    """An HTML page with the console's headers and no inline script or style."""
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert not _INLINE_SCRIPT.search(response.text)
    assert " style=" not in response.text


@asynccontextmanager
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookies (the app's lifespan must already be running)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def sign_in(client: httpx.AsyncClient, email: str, password: str = TEST_PASSWORD) -> str:
    """Signs in through the form; returns the session's CSRF token."""
    page = await client.get("/ui/login")
    response = await client.post(
        "/ui/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 303, response.text
    home = await client.get("/ui/inbox")
    return csrf_of(home.text)


@asynccontextmanager
async def signed_in(app: FastAPI, user: User) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client signed in as `user`, and its CSRF token."""
    async with browser(app) as page:
        yield page, await sign_in(page, user.email)
