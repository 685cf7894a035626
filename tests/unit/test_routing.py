"""`tandem.routing.Router`: a request outside a router's paths does not look at its routes,
and inside them everything routes as before (parameters, 405, trailing slash, root path)."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from tandem.routing import Router

pytestmark = pytest.mark.anyio


class CountedRoute(APIRoute):
    """An APIRoute that counts how often a request's path is matched against it."""

    looked_at = 0

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        CountedRoute.looked_at += 1
        return super().matches(scope)


def two_router_app() -> FastAPI:
    first = Router(prefix="/api/first", route_class=CountedRoute)
    second = Router(prefix="/api/second")

    @first.get("/items/{item_id}")
    async def first_item(item_id: int) -> dict[str, Any]:
        return {"router": "first", "item": item_id}

    @second.get("/items/{item_id}")
    async def second_item(item_id: int) -> dict[str, Any]:
        return {"router": "second", "item": item_id}

    @second.get("/things/")
    async def things() -> dict[str, Any]:
        return {"router": "second", "things": []}

    app = FastAPI()
    app.include_router(first)
    app.include_router(second)
    return app


async def get(app: FastAPI, path: str, method: str = "GET", root_path: str = "") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path)


async def test_a_request_for_another_router_never_looks_at_this_ones_routes() -> None:
    app = two_router_app()
    CountedRoute.looked_at = 0
    second = await get(app, "/api/second/items/7")
    assert second.json() == {"router": "second", "item": 7}
    assert CountedRoute.looked_at == 0

    first = await get(app, "/api/first/items/3")
    assert first.json() == {"router": "first", "item": 3}
    assert CountedRoute.looked_at > 0


async def test_inside_its_paths_a_router_routes_as_fastapi_does() -> None:
    app = two_router_app()
    wrong_method = await get(app, "/api/first/items/3", method="POST")
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"detail": "Method Not Allowed"},
    )
    bad_parameter = await get(app, "/api/second/items/seven")
    assert bad_parameter.status_code == 422, bad_parameter.text
    assert bad_parameter.json()["detail"][0]["loc"] == ["path", "item_id"]
    nowhere = await get(app, "/api/third/items/3")
    assert (nowhere.status_code, nowhere.json()) == (404, {"detail": "Not Found"})
    # The trailing-slash redirect still finds the route.
    redirected = await get(app, "/api/second/things")
    assert (redirected.status_code, redirected.headers["location"]) == (
        307,
        "http://t/api/second/things/",
    )


async def test_behind_a_root_path_the_router_matches_the_path_after_it() -> None:
    app = two_router_app()  # the server's root path (`uvicorn --root-path`) is in the scope
    response = await get(app, "/tandem/api/second/items/5", root_path="/tandem")
    assert response.json() == {"router": "second", "item": 5}
