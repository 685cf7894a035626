"""Security headers on every response, and the API docs served from an installed package.

`SecurityHeadersMiddleware` (plain ASGI, outermost) adds to every response, the 500s of
`RequestContextMiddleware` included, what it does not already carry:
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`;
- `X-Frame-Options: DENY` and `Content-Security-Policy: frame-ancestors 'none'` (a page that
  sets its own policy, such as the web console, keeps it);
- `Cache-Control: no-store` and `Pragma: no-cache`: API answers carry tokens, keys and
  tenants' data, none of which a shared cache or the browser's disk should keep;
- `Strict-Transport-Security` when the request came over https;
- the headers a request asked to carry (`carry_headers`): the rate limits' X-RateLimit-*,
  which a 401 or 404 built by an error handler must carry as a 200 does.
"""

from collections.abc import Mapping
from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULTS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# In the request's state (the ASGI scope's): the headers `carry_headers` was given.
CARRIED = "tandem_carried_headers"


def carry_headers(request: Request, headers: Mapping[str, str]) -> None:
    """The response to `request` carries `headers`, whatever builds it (the route's return
    value, a `Response` it made, an error handler), unless it sets one of them itself."""
    carried: dict[bytes, bytes] = request.scope.setdefault("state", {}).setdefault(CARRIED, {})
    carried.update((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                added = [(k, v) for k, v in DEFAULTS if k not in present]
                if (b"cache-control", b"no-store") in added and b"pragma" not in present:
                    added.append((b"pragma", b"no-cache"))
                if https and HSTS[0] not in present:
                    added.append(HSTS)
                carried = scope.get("state", {}).get(CARRIED, {})
                added += [(k, v) for k, v in carried.items() if k not in present]
                message = {**message, "headers": headers + added}
            await send(message)

        await self.app(scope, receive, send_with_headers)


DOCS_ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the `swagger-ui-bundle` package: works with no internet, and
    no third-party script runs next to a page holding a token. (ReDoc ships no such package,
    so /redoc is not served.)"""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = "/docs/oauth2-redirect"
    app.mount(
        DOCS_ASSETS,
        StaticFiles(directory=Path(swagger_ui_bundle.swagger_ui_path)),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
