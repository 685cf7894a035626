"""Which signing secret the server uses, and when it refuses to start."""

import os
import secrets
from pathlib import Path

import pytest

from tandem.identity.security import InsecureSecret, resolve_jwt_secret
from tandem.settings import Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(None, id="missing"),
        pytest.param("change-me", id="default"),
        pytest.param("secret", id="well-known"),
        pytest.param("x" * 31, id="31-bytes"),
    ],
)
def test_production_refuses_a_missing_default_or_short_secret(
    tmp_path: Path, secret: str | None
) -> None:
    with pytest.raises(InsecureSecret, match="at least 32 bytes"):
        resolve_jwt_secret(settings(tmp_path, env="production", jwt_secret=secret))
    assert not (tmp_path / "jwt-secret").exists(), "production never generates a secret"


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(secrets.token_urlsafe(32), id="urlsafe-32"),
        pytest.param(secrets.token_hex(32), id="hex-32"),
    ],
)
def test_production_accepts_a_random_secret(tmp_path: Path, secret: str) -> None:
    assert resolve_jwt_secret(settings(tmp_path, env="production", jwt_secret=secret)) == secret


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("a" * 32, id="one-character"),
        pytest.param("ab" * 40, id="two-characters"),
        pytest.param("abc" * 20, id="three-characters"),
    ],
)
def test_production_refuses_a_long_secret_with_little_entropy(tmp_path: Path, secret: str) -> None:
    """Issue 13, finding 6: length alone let 32 x "a" through."""
    with pytest.raises(InsecureSecret, match="too predictable"):
        resolve_jwt_secret(settings(tmp_path, env="production", jwt_secret=secret))


def test_development_generates_a_secret_once_and_keeps_it(tmp_path: Path) -> None:
    first = resolve_jwt_secret(settings(tmp_path))
    second = resolve_jwt_secret(settings(tmp_path))
    path = tmp_path / "jwt-secret"
    assert first == second == path.read_text()
    assert len(first) >= 48
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_development_uses_a_configured_secret(tmp_path: Path) -> None:
    assert resolve_jwt_secret(settings(tmp_path, jwt_secret="dev-secret")) == "dev-secret"


def test_unsupported_algorithm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InsecureSecret, match="HS256"):
        resolve_jwt_secret(settings(tmp_path, jwt_algorithm="RS256"))
