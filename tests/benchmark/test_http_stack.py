"""What the HTTP stack (request id, metrics, error handling) costs per request.

Run: pytest tests/benchmark -m performance --benchmark-only --no-cov
"""

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tandem.app import create_app
from tandem.settings import Settings

REQUESTS_PER_ROUND = 500


async def _health_requests(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(REQUESTS_PER_ROUND):
                response = await client.get("/health")
                assert response.status_code == 200, response.text


def test_health_requests_per_second(benchmark: Any, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/b.db", data_dir=tmp_path
    )
    benchmark.pedantic(lambda: asyncio.run(_health_requests(settings)), rounds=5, iterations=1)
    seconds_per_request = benchmark.stats.stats.median / REQUESTS_PER_ROUND
    benchmark.extra_info["requests_per_second"] = round(1 / seconds_per_request)
    benchmark.extra_info["median_latency_us"] = round(seconds_per_request * 1e6)
