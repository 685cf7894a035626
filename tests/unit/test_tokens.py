"""Access tokens: encoded and decoded with a frozen clock, refused for every way they go wrong."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from freezegun import freeze_time

from tandem.errors import Unauthorized
from tandem.identity.security import TokenSigner

SECRET = "s" * 64
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
signer = TokenSigner(secret=SECRET, issuer="tandem", algorithm="HS256", ttl=timedelta(minutes=15))
USER, ORG, LOGIN = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def mint(**claims_override: object) -> str:
    with freeze_time(NOW):
        token = signer.encode(
            user_id=USER, organization_id=ORG, session_id=LOGIN, scopes=frozenset({"agent:run"})
        )
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(claims_override)
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_claims_are_those_of_api_md() -> None:
    with freeze_time(NOW):
        token = signer.encode(
            user_id=USER, organization_id=ORG, session_id=LOGIN, scopes=frozenset({"b", "a"})
        )
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == str(USER)
    assert claims["org"] == str(ORG)
    assert claims["scopes"] == ["a", "b"]
    assert claims["type"] == "access"
    assert claims["iss"] == "tandem"
    assert claims["aud"] == "tandem"
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] == int(NOW.timestamp()) + 15 * 60
    assert len(claims["jti"]) == 32
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_round_trip_gives_back_the_claims() -> None:
    with freeze_time(NOW):
        decoded = signer.decode(mint())
    assert (decoded.user_id, decoded.organization_id, decoded.session_id) == (USER, ORG, LOGIN)
    assert decoded.scopes == {"agent:run"}
    assert decoded.expires_at == NOW + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("moment", "valid"),
    [
        pytest.param(NOW + timedelta(minutes=15, seconds=-1), True, id="one-second-before-exp"),
        pytest.param(NOW + timedelta(minutes=15), False, id="at-exp"),
        pytest.param(NOW + timedelta(minutes=15, seconds=1), False, id="one-second-after-exp"),
    ],
)
def test_expiry_to_the_second(moment: datetime, valid: bool) -> None:
    token = mint()
    with freeze_time(moment):
        if valid:
            assert signer.decode(token).user_id == USER
        else:
            with pytest.raises(Unauthorized, match="Access token expired"):
                signer.decode(token)


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _claims() -> dict[str, object]:
    return jwt.decode(mint(), options={"verify_signature": False})


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: jwt.encode(_claims(), "another-key" * 4, "HS256"), id="wrong-key"),
        pytest.param(lambda: _unsigned(_claims()), id="alg-none"),
        pytest.param(lambda: jwt.encode(_claims(), SECRET, "HS512"), id="other-algorithm"),
        pytest.param(lambda: mint(type="refresh"), id="wrong-type"),
        pytest.param(lambda: mint(aud="someone-else"), id="wrong-audience"),
        pytest.param(lambda: mint(iss="evil"), id="wrong-issuer"),
        pytest.param(lambda: mint(sub="not-a-uuid"), id="malformed-subject"),
        pytest.param(lambda: mint(scopes="agent:run"), id="scopes-not-a-list"),
        pytest.param(
            lambda: jwt.encode({k: v for k, v in _claims().items() if k != "sid"}, SECRET),
            id="missing-login-id",
        ),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_refused_with_401(token: object) -> None:
    with freeze_time(NOW), pytest.raises(Unauthorized) as caught:
        signer.decode(token())  # type: ignore[operator]
    assert caught.value.status_code == 401
    assert caught.value.detail == "Invalid access token"
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
