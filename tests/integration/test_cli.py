"""`tandem migrate` and the schema check `tandem serve` runs before it starts."""

import gc
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tandem import __version__
from tandem.app import create_app
from tandem.cli import app, frozen_after_startup
from tandem.settings import Settings

runner = CliRunner()


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_migrate_brings_an_empty_sqlite_database_to_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "Database schema is at revision" in result.stdout
    assert (tmp_path / "cli.db").exists()


def test_migrate_then_migrate_again_is_idempotent(
    create_postgres_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", create_postgres_database())
    first, second = runner.invoke(app, ["migrate"]), runner.invoke(app, ["migrate"])
    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    assert first.stdout == second.stdout


def test_serve_refuses_an_outdated_postgres_schema_and_names_tandem_migrate(
    create_postgres_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", create_postgres_database())
    result = runner.invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 1
    assert "tandem migrate" in result.output
    assert "--migrate" in result.output


def test_unreachable_database_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, free_tcp_port: int
) -> None:
    monkeypatch.setenv(
        "TANDEM_DATABASE_URL", f"postgresql+psycopg://tandem@127.0.0.1:{free_tcp_port}/x"
    )
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 1
    assert "cannot reach the database" in result.output


@pytest.mark.anyio
async def test_the_served_app_freezes_its_startup_heap_once_started(tmp_path: Path) -> None:
    """A full garbage collection over the ~390,000 objects every process holds from startup
    on stalled every request for ~200 ms under load: `tandem serve` and `tandem worker` take
    them out of the collector's sight once started."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'frozen.db'}",
        data_dir=tmp_path,
        worker_enabled=False,
    )
    api = frozen_after_startup(create_app(settings))
    frozen_before = gc.get_freeze_count()
    try:
        async with api.router.lifespan_context(api):
            assert api.state.engine is not None, "the app's own startup ran"
            assert gc.get_freeze_count() > frozen_before
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/health")).status_code == 200
    finally:
        gc.unfreeze()  # the test process goes on creating and dropping apps
