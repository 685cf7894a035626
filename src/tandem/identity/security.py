"""Passwords, access tokens (JWT), refresh tokens and API keys: the cryptographic pieces.

Pure functions over explicit inputs (secret, clock), so they are unit-tested without I/O.
"""

import hashlib
import math
import os
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio.to_thread
import jwt
from pwdlib import PasswordHash

from tandem.errors import Unauthorized
from tandem.settings import DEFAULT_JWT_SECRETS, MIN_PRODUCTION_SECRET_BYTES, Settings

AUDIENCE = "tandem"
ACCESS_TOKEN_TYPE = "access"
API_KEY_PREFIX = "tdm_"
API_KEY_VISIBLE_CHARS = 12
SECRET_FILE_NAME = "jwt-secret"
SUPPORTED_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}

_password_hash = PasswordHash.recommended()  # argon2id with the library's recommended costs
# Verified against when the e-mail is unknown, so that a miss costs as long as a wrong password.
_DUMMY_HASH = _password_hash.hash(secrets.token_urlsafe(16))


class InsecureSecret(Exception):
    """The configured JWT secret may not be used (production with a weak or missing one)."""


# --- passwords -----------------------------------------------------------------------------


async def hash_password(password: str) -> str:
    # argon2 is CPU-bound for ~0.1 s by design: keep it off the event loop.
    return await anyio.to_thread.run_sync(_password_hash.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant work whether or not there is a hash to check against."""
    target = password_hash or _DUMMY_HASH
    valid = await anyio.to_thread.run_sync(_password_hash.verify, password, target)
    return valid and password_hash is not None


# --- the signing secret --------------------------------------------------------------------


MIN_SECRET_ENTROPY_BITS = 128


def estimated_entropy_bits(secret: str) -> float:
    """Length times the Shannon entropy of the secret's characters: an upper bound that
    catches repeated or few-character secrets (32 x "a" is 0 bits), not clever patterns."""
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_char * len(secret)


def resolve_jwt_secret(settings: Settings) -> str:
    """The secret to sign with; generated once and kept in the data directory in development."""
    if settings.jwt_algorithm not in SUPPORTED_ALGORITHMS:
        raise InsecureSecret(
            f"TANDEM_JWT_ALGORITHM must be one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
        )
    secret = settings.jwt_secret
    if settings.is_production:
        if (
            secret is None
            or secret.strip().lower() in DEFAULT_JWT_SECRETS
            or len(secret.encode()) < MIN_PRODUCTION_SECRET_BYTES
        ):
            raise InsecureSecret(
                "TANDEM_JWT_SECRET must be set to a random value of at least "
                f"{MIN_PRODUCTION_SECRET_BYTES} bytes in production "
                '(e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        if estimated_entropy_bits(secret) < MIN_SECRET_ENTROPY_BITS:
            raise InsecureSecret(
                "TANDEM_JWT_SECRET is too predictable (repeated or few distinct characters); "
                "use a random value, e.g. "
                'python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        return secret
    if secret:
        return secret
    return _development_secret(settings.data_dir)


def _development_secret(data_dir: Path) -> str:
    path = data_dir / SECRET_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: if two processes start at once, exactly one writes and both read its secret;
    # created 0600, never readable by others even for a moment.
    try:
        with os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "w") as handle:
            handle.write(secret)
    except FileExistsError:
        return path.read_text().strip()
    return secret


# --- access tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    session_id: uuid.UUID
    scopes: frozenset[str]
    expires_at: datetime


@dataclass(frozen=True)
class TokenSigner:
    secret: str
    issuer: str
    algorithm: str
    ttl: timedelta

    def encode(
        self,
        *,
        user_id: uuid.UUID,
        organization_id: uuid.UUID,
        session_id: uuid.UUID,
        scopes: frozenset[str],
        now: datetime | None = None,
    ) -> str:
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "org": str(organization_id),
            "sid": str(session_id),
            "scopes": sorted(scopes),
            "type": ACCESS_TOKEN_TYPE,
            "iat": issued,
            "exp": issued + self.ttl,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": AUDIENCE,
        }
        return jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def decode(self, token: str) -> AccessClaims:
        """Checks signature, algorithm, audience, issuer, expiry and type, or raises 401."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[self.algorithm],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": ["sub", "org", "sid", "exp", "iat", "jti", "type"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Access token expired", headers=BEARER_CHALLENGE) from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("Invalid access token", headers=BEARER_CHALLENGE) from exc
        if claims["type"] != ACCESS_TOKEN_TYPE or not isinstance(claims.get("scopes"), list):
            raise Unauthorized("Invalid access token", headers=BEARER_CHALLENGE)
        try:
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                organization_id=uuid.UUID(claims["org"]),
                session_id=uuid.UUID(claims["sid"]),
                scopes=frozenset(str(s) for s in claims["scopes"]),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except (ValueError, TypeError) as exc:
            raise Unauthorized("Invalid access token", headers=BEARER_CHALLENGE) from exc


# --- opaque secrets: refresh tokens and API keys ---------------------------------------------


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """A fresh key and its visible prefix (shown in listings to tell keys apart)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:API_KEY_VISIBLE_CHARS]
