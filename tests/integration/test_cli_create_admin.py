"""`tandem create-admin`: an organization and its first admin, made without HTTP.

The command is run with typer's CliRunner against a SQLite file; whether it worked is judged
the way a user would judge it: by logging in to the app built on that same database.
"""

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tandem.app import create_app
from tandem.cli import app
from tandem.settings import Settings
from tests.conftest import running

runner = CliRunner()
PASSWORD = "twelve chars or more"


@pytest.fixture
def database_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's settings come from the environment: a fresh SQLite file in tmp_path."""
    path = tmp_path / "admin.db"
    monkeypatch.chdir(tmp_path)  # no stray .env or ./tandem.db is read or written
    monkeypatch.setenv("TANDEM_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path))
    return path


def create_admin(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, ["create-admin", *args], input=input)


def log_in(database: Path, email: str, password: str) -> dict[str, Any]:
    """Logs in over HTTP (ASGI) to an app on `database`; the token's user, org and scopes."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{database}",
        data_dir=database.parent,
    )

    async def scenario() -> dict[str, Any]:
        async with running(create_app(settings)) as client:
            login = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": password}
            )
            if login.status_code != 200:
                return {"login": login.status_code, "detail": login.json()["detail"]}
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            me = await client.get("/api/v1/users/me", headers=headers)
            organization = await client.get("/api/v1/organizations/current", headers=headers)
            return {"login": 200, "me": me.json(), "organization": organization.json()}

    return asyncio.run(scenario())


def organization_names(database: Path) -> list[str]:
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT name FROM organizations ORDER BY name").fetchall()
    return [name for (name,) in rows]


def test_create_admin_makes_an_admin_who_can_log_in(database_file: Path) -> None:
    result = create_admin(
        "--email", "ops@example.com", "--organization", "Night Shift", "--password", PASSWORD
    )
    assert result.exit_code == 0, result.output
    assert "ops@example.com" in result.stdout
    assert "Night Shift" in result.stdout
    assert PASSWORD not in result.output

    session = log_in(database_file, "ops@example.com", PASSWORD)
    assert session["login"] == 200, session
    me = session["me"]
    assert (me["email"], me["role"], me["is_active"]) == ("ops@example.com", "admin", True)
    assert "users:admin" in me["scopes"]
    assert me["id"] in result.stdout
    assert session["organization"]["name"] == "Night Shift"
    assert session["organization"]["id"] == me["organization_id"]


def test_create_admin_stores_the_email_in_lower_case(database_file: Path) -> None:
    result = create_admin(
        "--email", "Ops.Lead@Example.COM", "--organization", "Upper", "--password", PASSWORD
    )
    assert result.exit_code == 0, result.output
    session = log_in(database_file, "ops.lead@example.com", PASSWORD)
    assert session["login"] == 200, session
    assert session["me"]["email"] == "ops.lead@example.com"


def test_a_duplicate_email_exits_1_and_creates_nothing(database_file: Path) -> None:
    first = create_admin(
        "--email", "dup@example.com", "--organization", "First", "--password", PASSWORD
    )
    assert first.exit_code == 0, first.output
    second = create_admin(
        "--email", "dup@example.com", "--organization", "Second", "--password", "another password"
    )
    assert second.exit_code == 1, second.output
    assert "Email already registered" in second.stderr
    assert second.stdout == ""
    assert organization_names(database_file) == ["First"], "no orphan organization is left"

    # The first admin is untouched: their password, their organization.
    session = log_in(database_file, "dup@example.com", PASSWORD)
    assert session["login"] == 200, session
    assert session["organization"]["name"] == "First"
    refused = log_in(database_file, "dup@example.com", "another password")
    assert refused == {"login": 401, "detail": "Incorrect email or password"}


@pytest.mark.parametrize(
    ("email", "password", "field", "words"),
    [
        pytest.param(
            "short@example.com", "s3cr3t", "password", "at least 12 characters", id="short-pw"
        ),
        pytest.param(
            "short@example.com", "x" * 11, "password", "at least 12 characters", id="eleven-chars"
        ),
        pytest.param("not-an-email", PASSWORD, "email", "email", id="bad-email"),
    ],
)
def test_invalid_input_exits_2_naming_the_rule_and_creates_nothing(
    database_file: Path, email: str, password: str, field: str, words: str
) -> None:
    result = create_admin("--email", email, "--organization", "Org", "--password", password)
    assert result.exit_code == 2, result.output
    assert f"{field}:" in result.stderr
    assert words in result.stderr
    assert password not in result.output
    assert result.stdout == ""

    assert organization_names(database_file) == []
    # Nothing was created: the same e-mail can still be used with a valid password.
    valid = create_admin(
        "--email", "short@example.com", "--organization", "Org", "--password", PASSWORD
    )
    assert valid.exit_code == 0, valid.output


@pytest.mark.parametrize(
    ("typed", "mismatch"),
    [
        pytest.param(f"{PASSWORD}\n{PASSWORD}\n", False, id="typed-twice"),
        pytest.param(
            f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n",
            True,
            id="mismatch-then-retyped",
        ),
    ],
)
def test_the_password_is_prompted_for_when_omitted(
    database_file: Path, typed: str, mismatch: bool
) -> None:
    result = create_admin(
        "--email", "prompt@example.com", "--organization", "Prompted", input=typed
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert ("do not match" in result.output) is mismatch
    assert PASSWORD not in result.output, "the prompt hides what is typed"
    session = log_in(database_file, "prompt@example.com", PASSWORD)
    assert session["login"] == 200, session
    assert session["me"]["role"] == "admin"
