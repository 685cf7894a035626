"""Issue 13, finding 7: no secret or hash in the log at any level, control characters
escaped, and the files holding secrets created readable by their owner only."""

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tandem.app import create_app
from tandem.db import create_engine
from tandem.identity.models import User
from tandem.observability import QUIET_LOGGERS, configure_logging
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running

pytestmark = pytest.mark.anyio

PASSWORD = "a long enough password"
AGENT_INPUT = "Quarterly figures of the confidential merger. " * 5


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The log as `tandem serve` writes it with TANDEM_LOG_LEVEL=DEBUG, captured."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    stream = io.StringIO()
    configure_logging(json_output=False, level="DEBUG", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, old in saved_levels.items():
            logging.getLogger(name).setLevel(old)


async def test_debug_logging_shows_no_secret_or_hash(
    committed_db: CommittedDatabase, tmp_path: Path, debug_log: io.StringIO
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=committed_db.url, data_dir=tmp_path, job_poll_seconds=0.05
    )
    async with running(create_app(settings)) as client:
        body = {"email": "owner@example.com", "password": PASSWORD, "full_name": "Owner"}
        registered = (await client.post("/api/v1/auth/register", json=body)).json()
        login = await client.post(
            "/api/v1/auth/login", json={"email": "owner@example.com", "password": PASSWORD}
        )
        tokens = login.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        key = await client.post(
            "/api/v1/api-keys", json={"name": "ci", "scopes": ["agent:run"]}, headers=headers
        )
        as_key = {"X-API-Key": key.json()["key"]}
        run = await client.post(
            "/api/v1/agents/run",
            json={"agent_id": "summarizer", "input_text": AGENT_INPUT},
            headers=as_key,
        )
        assert run.status_code == 200, run.text
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
        bad = {"email": "owner@example.com", "password": "wrong password!"}
        assert (await client.post("/api/v1/auth/login", json=bad)).status_code == 401

    async with committed_db.sessionmaker() as session:
        password_hash = await session.scalar(select(User.password_hash))
    assert password_hash
    assert password_hash.startswith("$argon2")
    secrets = {
        "password": PASSWORD,
        "password hash": password_hash,
        "argon2 hash": "$argon2",
        "access token": tokens["access_token"],
        "registration's access token": registered["access_token"],
        "refresh token": tokens["refresh_token"],
        "refresh token hash": hashlib.sha256(tokens["refresh_token"].encode()).hexdigest(),
        "API key": key.json()["key"],
        "API key hash": hashlib.sha256(key.json()["key"].encode()).hexdigest(),
        "agent input": AGENT_INPUT[:40],
    }
    logged = debug_log.getvalue()
    assert "tandem.audit: audit login" in logged, "the capture works"
    for name, secret in secrets.items():
        assert secret not in logged, f"the {name} is in the log"


@pytest.mark.parametrize(
    "json_output", [pytest.param(False, id="readable"), pytest.param(True, id="json")]
)
def test_control_characters_in_logged_values_are_escaped(json_output: bool) -> None:
    """A value a user chose (a name, a path) cannot end the line, forge another one or drive
    the terminal that shows the log."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging(json_output=json_output, level="INFO", stream=stream)
        name = "Eve\x1b[2J\x1b[31m\r\nINFO tandem.audit: audit login outcome=success"
        logging.getLogger("tandem.test").info("Welcome %s", name, extra={"full_name": name})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    logged = stream.getvalue()
    assert logged.count("\n") == 1, "one line"
    assert "\x1b" not in logged
    assert "\r" not in logged
    if json_output:
        assert json.loads(logged)["message"] == f"Welcome {name}", "kept exactly, encoded"
    else:
        assert "Eve\\x1b[2J\\x1b[31m\\r\\nINFO" in logged


async def test_a_new_sqlite_database_is_private(tmp_path: Path) -> None:
    path = tmp_path / "tandem.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
    await engine.dispose()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
