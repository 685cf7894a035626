import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from tandem.settings import DEFAULT_DATABASE_URL, Environment, Settings


def test_defaults_run_on_embedded_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_DATABASE_URL", raising=False)
    monkeypatch.delenv("TANDEM_ENV", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./tandem.db"
    assert settings.env is Environment.development
    assert settings.is_sqlite
    assert not settings.is_production


def test_environment_variables_use_the_tandem_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_ENV", "production")
    monkeypatch.setenv("TANDEM_DATABASE_URL", "postgresql+psycopg://db.example/tandem")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.is_production
    assert not settings.is_sqlite
    assert settings.database_url == "postgresql+psycopg://db.example/tandem"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_LOG_LEVEL", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("TANDEM_LOG_LEVEL=DEBUG\n")
    assert Settings(_env_file=env_file).log_level == "DEBUG"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///./tandem.db", id="sync-sqlite-driver"),
        pytest.param("postgresql://localhost/tandem", id="no-async-driver"),
        pytest.param("mysql+aiomysql://localhost/tandem", id="unsupported-database"),
    ],
)
def test_unsupported_database_url_is_refused_with_the_accepted_forms(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    message = str(caught.value)
    assert "sqlite+aiosqlite://" in message
    assert "postgresql+psycopg://" in message


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_ENV", "staging")
    with pytest.raises(ValidationError, match="development"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("rate_limit_jobs", "lots", "is not a rate limit", id="not-a-limit"),
        pytest.param(
            "rate_limit_register_global", "10 per fortnight", "is not a rate limit", id="bad-unit"
        ),
        pytest.param(
            "rate_limit_content",
            "49/hour",
            "allows fewer drafts than one request may ask for (50)",
            id="content-under-one-request",
        ),
    ],
)
def test_rate_limits_are_checked_when_read(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(_env_file=None, **{field: value})  # type: ignore[call-arg]
