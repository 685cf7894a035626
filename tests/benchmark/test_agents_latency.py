"""Offline-model agent runs through the API: latency, throughput with 20 clients, overhead.

Run: pytest tests/benchmark -m performance --benchmark-only --no-cov
"""

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from tandem.agents import registry, run_agent
from tandem.agents.offline import OfflineModel
from tandem.app import create_app
from tandem.db import create_engine
from tandem.migrations import upgrade_to_head
from tandem.settings import Settings

CLIENTS = 20
RUNS_PER_CLIENT = 5
TEXT = (
    "The city council approved a new budget on Tuesday. The budget raises spending on public "
    "transport by ten percent. Critics said the plan ignores rising housing costs. The mayor "
    "promised a separate housing plan next spring. Bus fares will stay the same for a year."
)
BODY = {"agent_id": "summarizer", "input_text": TEXT}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _through_the_api(directory: Path) -> dict[str, float]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{directory}/bench.db",
        data_dir=directory,
        rate_limit_agents="100000/minute",
        job_concurrency=CLIENTS,
        job_poll_seconds=0.01,
    )
    engine = create_engine(settings.database_url)
    await upgrade_to_head(engine)
    await engine.dispose()
    app = create_app(settings)
    latencies: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            account = {
                "email": "bench@example.com",
                "password": "a long enough password",
                "full_name": "B",
            }
            token = (await client.post("/api/v1/auth/register", json=account)).json()[
                "access_token"
            ]
            headers = {"Authorization": f"Bearer {token}"}

            async def one_client() -> None:
                for _ in range(RUNS_PER_CLIENT):
                    started = time.perf_counter()
                    response = await client.post("/api/v1/agents/run", json=BODY, headers=headers)
                    assert response.json()["status"] == "completed", response.text
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
            elapsed = time.perf_counter() - started
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "runs_per_second": len(latencies) / elapsed,
    }


async def _direct(runs: int) -> float:
    model = OfflineModel(registry.offline_skills())
    started = time.perf_counter()
    for _ in range(runs):
        await run_agent("summarizer", TEXT, {}, model=model)
    return (time.perf_counter() - started) / runs


def test_offline_runs_through_the_api(benchmark: Any, tmp_path: Path) -> None:
    figures: list[dict[str, float]] = []
    rounds = iter(range(100))

    def one_round() -> None:
        directory = tmp_path / f"round-{next(rounds)}"
        directory.mkdir()
        figures.append(asyncio.run(_through_the_api(directory)))

    benchmark.pedantic(one_round, rounds=3, iterations=1)
    direct_seconds = asyncio.run(_direct(200))
    median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
    benchmark.extra_info.update({key: round(value, 2) for key, value in median.items()})
    benchmark.extra_info["direct_agent_ms"] = round(direct_seconds * 1000, 3)
    # Sequential cost of one run through our API (HTTP, auth, run row, job, executor, polling)
    # against calling the pydantic-ai agent directly.
    benchmark.extra_info["overhead_ratio_p50"] = round(
        median["p50_ms"] / (direct_seconds * 1000), 1
    )
