import json
import logging

import httpx
import pytest
from fastapi import FastAPI

from tandem.observability import (
    HttpMetrics,
    JsonFormatter,
    ReadableFormatter,
    RequestContextMiddleware,
    configure_logging,
    request_id_var,
)

pytestmark = pytest.mark.anyio


def echo_app() -> tuple[FastAPI, HttpMetrics]:
    app = FastAPI()
    metrics = HttpMetrics()
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, str | None]:
        return {"request_id": request_id_var.get()}

    return app, metrics


async def get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, headers=headers)


async def test_every_response_gets_a_fresh_request_id() -> None:
    app, _ = echo_app()
    first, second = await get(app, "/items/1"), await get(app, "/items/2")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert first.json() == {"request_id": first.headers["x-request-id"]}


async def test_client_request_id_is_echoed() -> None:
    app, _ = echo_app()
    response = await get(app, "/items/1", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json() == {"request_id": "abc-123"}


@pytest.mark.parametrize(
    "unsafe",
    [pytest.param("a b c", id="spaces"), pytest.param("x" * 200, id="too-long")],
)
async def test_unsafe_client_request_id_is_replaced(unsafe: str) -> None:
    app, _ = echo_app()
    response = await get(app, "/items/1", headers={"X-Request-ID": unsafe})
    assert response.headers["x-request-id"] != unsafe
    assert len(response.headers["x-request-id"]) == 32


async def test_metrics_count_by_route_template_not_raw_path() -> None:
    app, metrics = echo_app()
    for item in (1, 2, 3):
        await get(app, f"/items/{item}")
    await get(app, "/nowhere")
    counted = metrics.registry.get_sample_value(
        "tandem_http_requests_total",
        {"method": "GET", "route": "/items/{item_id}", "status": "200"},
    )
    unmatched = metrics.registry.get_sample_value(
        "tandem_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}
    )
    latency_count = metrics.registry.get_sample_value(
        "tandem_http_request_duration_seconds_count",
        {"method": "GET", "route": "/items/{item_id}"},
    )
    assert (counted, unmatched, latency_count) == (3.0, 1.0, 3.0)


def test_json_formatter_writes_one_object_with_request_id_and_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "tandem.jobs", "levelname": "INFO", "msg": "job %s done", "args": ("j1",)}
    )
    record.job_id = "j1"
    token = request_id_var.set("req-9")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "job j1 done"
    assert entry["level"] == "info"
    assert entry["logger"] == "tandem.jobs"
    assert entry["request_id"] == "req-9"
    assert entry["job_id"] == "j1"


def test_json_formatter_includes_the_exception() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: broken" in entry["exception"]
    assert "request_id" not in entry


def test_readable_formatter_appends_request_id() -> None:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "hello"})
    token = request_id_var.set("req-1")
    try:
        line = ReadableFormatter("%(message)s").format(record)
    finally:
        request_id_var.reset(token)
    assert line == "hello [request_id=req-1]"


@pytest.mark.parametrize(
    ("json_output", "formatter"),
    [
        pytest.param(True, JsonFormatter, id="production"),
        pytest.param(False, ReadableFormatter, id="development"),
    ],
)
def test_configure_logging_picks_the_format(json_output: bool, formatter: type) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging(json_output=json_output, level="warning")
        assert isinstance(root.handlers[0].formatter, formatter)
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
