from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tandem.app import create_app
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.integration.scheduling_setup import SchedulingApi


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def live(committed_db: CommittedDatabase, tmp_path: Path) -> AsyncIterator[SchedulingApi]:
    """The app on the committed database with its embedded executor; signed in as the admin
    of a new organization."""
    settings = Settings(
        _env_file=None,
        database_url=committed_db.url,
        data_dir=tmp_path,
        job_poll_seconds=0.05,
        job_retry_base_seconds=0.05,
        job_lease_seconds=3,
        rate_limit_register="1000/minute",
    )
    async with running(create_app(settings)) as client:
        body = {
            "email": "chief@example.com",
            "password": "a long enough password",
            "full_name": "C",
        }
        token = (await client.post("/api/v1/auth/register", json=body)).json()["access_token"]
        yield SchedulingApi(client, {"Authorization": f"Bearer {token}"})
