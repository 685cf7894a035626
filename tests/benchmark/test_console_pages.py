"""Server time of the console's heaviest pages on SQLite: the inbox with 1,000 waiting
threads, and the grid of a 28-day schedule for 30 residents (and 10 faculty): wall time per
request over httpx's ASGI transport (median, p99) and the process's CPU time per request.

Run: pytest tests/benchmark/test_console_pages.py -m performance --benchmark-only --no-cov -s
"""

import asyncio
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from tandem.app import create_app
from tandem.db import create_engine, utcnow
from tandem.migrations import upgrade_to_head
from tandem.review.models import ReviewRevision, ReviewThread
from tandem.review.states import ThreadStatus
from tandem.scheduling.domain import AssignmentRole, PersonType, RotationKind, TimeOfDay
from tandem.scheduling.models import Assignment, Block, Person, Rotation, Schedule
from tandem.settings import Settings
from tests.console_support import sign_in

THREADS = 1_000
RESIDENTS, FACULTY, DAYS = 30, 10, 28
START = date(2027, 1, 4)
REQUESTS = 100


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _seed(app: Any, organization_id: uuid.UUID) -> uuid.UUID:
    """1,000 content threads waiting for review, and a filled 28-day schedule."""
    now = utcnow()
    async with app.state.sessionmaker() as session, session.begin():
        revisions = []
        for i in range(THREADS):
            thread = ReviewThread(
                id=uuid.uuid4(),
                organization_id=organization_id,
                kind="content",
                status=ThreadStatus.pending_review,
                platform=("linkedin", "twitter", "blog")[i % 3],
                revision=1,
                edit_count=0,
                payload={"topics": ["trams"]},
                created_at=now - timedelta(seconds=THREADS - i),
                updated_at=now,
            )
            session.add(thread)
            revisions.append(
                ReviewRevision(
                    thread_id=thread.id,
                    number=1,
                    drafts=[f"Draft {i} about trams and the people who ride them. " * 4] * 3,
                )
            )
        await session.flush()  # threads before their revisions (no ORM relationship)
        session.add_all(revisions)
        people = [
            Person(
                id=uuid.uuid4(),
                organization_id=organization_id,
                name=f"Resident {n:02}",
                email=f"resident{n}@example.com",
                type=PersonType.RESIDENT,
                pgy_level=n % 3 + 1,
            )
            for n in range(RESIDENTS)
        ] + [
            Person(
                id=uuid.uuid4(),
                organization_id=organization_id,
                name=f"Faculty {n:02}",
                email=f"faculty{n}@example.com",
                type=PersonType.FACULTY,
            )
            for n in range(FACULTY)
        ]
        rotations = [
            Rotation(
                id=uuid.uuid4(),
                organization_id=organization_id,
                name=name,
                kind=kind,
                min_residents=2,
                max_residents=10,
                requires_supervision=True,
            )
            for name, kind in (
                ("General Clinic", RotationKind.CLINIC),
                ("Inpatient Ward", RotationKind.INPATIENT),
                ("ICU", RotationKind.ICU),
                ("Procedures", RotationKind.PROCEDURES),
            )
        ]
        blocks = [
            Block(
                id=uuid.uuid4(),
                organization_id=organization_id,
                date=START + timedelta(days=d),
                time_of_day=half,
            )
            for d in range(DAYS)
            for half in (TimeOfDay.AM, TimeOfDay.PM)
        ]
        schedule = Schedule(
            id=uuid.uuid4(),
            organization_id=organization_id,
            name="January",
            start_date=START,
            end_date=START + timedelta(days=DAYS - 1),
        )
        session.add_all([*people, *rotations, *blocks, schedule])
        await session.flush()
        for b, block in enumerate(blocks):
            if block.date.weekday() == 6:
                continue  # Sundays off
            for p, person in enumerate(people):
                session.add(
                    Assignment(
                        organization_id=organization_id,
                        schedule_id=schedule.id,
                        person_id=person.id,
                        block_id=block.id,
                        rotation_id=rotations[(p + b) % len(rotations)].id,
                        role=AssignmentRole.PRIMARY
                        if person.type is PersonType.RESIDENT
                        else AssignmentRole.SUPERVISING,
                    )
                )
    return schedule.id


async def _time_pages(directory: Path) -> dict[str, dict[str, float]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{directory}/bench.db",
        data_dir=directory,
        worker_enabled=False,
    )
    engine = create_engine(settings.database_url)
    await upgrade_to_head(engine)
    await engine.dispose()
    app = create_app(settings)
    figures: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            account = {"email": "b@example.com", "password": "a long enough password"}
            registered = await client.post(
                "/api/v1/auth/register", json=account | {"full_name": "Bench"}
            )
            organization_id = uuid.UUID(registered.json()["user"]["organization_id"])
            schedule_id = await _seed(app, organization_id)
            await sign_in(client, account["email"], account["password"])
            for name, path in (("inbox", "/ui/inbox"), ("grid", f"/ui/schedules/{schedule_id}")):
                samples, cpu = [], []
                for _ in range(REQUESTS):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    response = await client.get(path)
                    samples.append(time.perf_counter() - started)
                    cpu.append(time.process_time() - started_cpu)
                    assert response.status_code == 200, response.text
                if name == "inbox":
                    assert f"<strong>{THREADS}</strong> waiting" in response.text
                else:
                    assert response.text.count("<td") == (RESIDENTS + FACULTY) * DAYS * 2
                figures[name] = {
                    "median_ms": round(_percentile(samples, 0.5) * 1000, 1),
                    "p99_ms": round(_percentile(samples, 0.99) * 1000, 1),
                    # CPU time of this process (all its threads): what the page costs,
                    # whatever else the machine is doing.
                    "cpu_median_ms": round(_percentile(cpu, 0.5) * 1000, 1),
                    "bytes": len(response.content),
                }
    return figures


def test_console_page_times(benchmark: Any, tmp_path: Path) -> None:
    figures: dict[str, dict[str, float]] = {}

    def measure() -> None:
        figures.update(asyncio.run(_time_pages(tmp_path)))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {f"{page}_{k}": v for page, f in figures.items() for k, v in f.items()}
    )
    print(figures)
