"""Issue 13, finding 5: security headers on every response; /docs served from the package."""

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tandem.app import create_app
from tandem.http_headers import SecurityHeadersMiddleware
from tandem.identity.models import User
from tandem.ratelimit import RateLimitState, report
from tandem.settings import Settings
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.anyio

EVERY_RESPONSE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "cache-control": "no-store",
}


def _operations() -> list[object]:
    schema = create_app(Settings(jwt_secret="x" * 64)).openapi()
    return [
        pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
        for path, item in sorted(schema["paths"].items())
        for method in item
    ]


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in EVERY_RESPONSE.items():
        assert response.headers.get(name) == value, f"{name} on {response.request.url}"
    assert "strict-transport-security" not in response.headers, "not over plain http"


@pytest.mark.parametrize(("method", "path"), _operations())
async def test_every_route_answers_with_the_security_headers(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
    response = await client.request(method, url)
    assert_security_headers(response)


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p) for p in ("/docs", "/openapi.json", "/no-such-page")]
)
async def test_pages_outside_the_api_carry_them_too(client: httpx.AsyncClient, path: str) -> None:
    assert_security_headers(await client.get(path))


async def test_token_responses_are_not_stored(client: httpx.AsyncClient, member: User) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


async def test_hsts_only_over_https(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.get("/health")
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


async def test_a_policy_the_response_set_is_kept() -> None:
    """The web console sets its own strict CSP; the middleware adds only what is missing."""

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            "hi",
            headers={
                "Content-Security-Policy": "default-src 'self'",
                "Cache-Control": "max-age=60",
            },
        )

    inner = Starlette(routes=[Route("/", page)])
    inner.add_middleware(SecurityHeadersMiddleware)
    transport = httpx.ASGITransport(app=inner)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/")
    assert response.headers["content-security-policy"] == "default-src 'self'"
    assert response.headers["cache-control"] == "max-age=60"
    assert response.headers["x-frame-options"] == "DENY"


async def test_a_request_reports_its_rate_limit_on_whatever_response_it_gets() -> None:
    """`ratelimit.report`: a 200, a `Response` the route made and an error handler's 404 all
    carry the budget's X-RateLimit-*; a response that sets one itself keeps its own."""

    def charged(request: Request) -> None:
        report(request, RateLimitState(limit=5, remaining=2, reset_at=1_900_000_000.5))

    async def ok(request: Request) -> PlainTextResponse:
        charged(request)
        return PlainTextResponse("ok")

    async def missing(request: Request) -> PlainTextResponse:
        charged(request)
        raise HTTPException(404, "nothing here")

    async def refused(request: Request) -> PlainTextResponse:
        charged(request)
        return PlainTextResponse("no", 429, headers={"X-RateLimit-Limit": "1"})

    inner = Starlette(routes=[Route("/ok", ok), Route("/missing", missing), Route("/no", refused)])
    inner.add_middleware(SecurityHeadersMiddleware)
    transport = httpx.ASGITransport(app=inner)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = [await client.get(path) for path in ("/ok", "/missing", "/no")]
    budget = {"limit": "5", "remaining": "2", "reset": "1900000001"}
    reported = [
        {k: a.headers.get(f"x-ratelimit-{k}") for k in budget} | {"status": a.status_code}
        for a in answers
    ]
    assert reported == [
        budget | {"status": 200},
        budget | {"status": 404},
        budget | {"limit": "1", "status": 429},
    ]
    assert answers[1].text == "nothing here"


async def test_docs_are_served_from_the_installed_package(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200, page.text
    assert "cdn" not in page.text
    assets = re.findall(r"""['"](/docs/assets/[^'"]+)['"]""", page.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert len(script.content) > 100_000, "the whole Swagger UI, not a stub"
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert served.content
