"""Registration input: the password policy and e-mail rules, with messages a person can act on."""

import pytest
from pydantic import ValidationError

from tandem.identity.schemas import RegisterIn, UserCreateIn


def register(**overrides: str) -> RegisterIn:
    fields = {"email": "ann@example.com", "password": "x" * 12, "full_name": "Ann"}
    return RegisterIn.model_validate(fields | overrides)


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("x" * 12, id="exactly-12"),
        pytest.param("correct horse battery", id="passphrase"),
        pytest.param("ünïcødé-pässwörd", id="unicode"),
        pytest.param("x" * 1024, id="longest-allowed"),
    ],
)
def test_acceptable_passwords(password: str) -> None:
    assert register(password=password).password == password


@pytest.mark.parametrize(
    ("password", "message"),
    [
        pytest.param("", "Password too short: at least 12 characters", id="empty"),
        pytest.param("x" * 11, "Password too short: at least 12 characters", id="eleven"),
        pytest.param("x" * 1025, "Password too long: at most 1024 characters", id="too-long"),
        pytest.param(" " * 12, "Password cannot be only spaces", id="blank"),
    ],
)
def test_refused_passwords_name_the_rule(password: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        register(password=password)
    (error,) = caught.value.errors()
    assert error["loc"] == ("password",)
    assert error["msg"] == message


def test_user_creation_applies_the_same_policy() -> None:
    with pytest.raises(ValidationError, match="Password too short"):
        UserCreateIn(email="bob@example.com", password="short", full_name="Bob")


def test_email_is_normalised_to_lower_case() -> None:
    assert register(email="  Ann.Smith@Example.COM ").email == "ann.smith@example.com"


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("not-an-email", id="no-at"),
        pytest.param("ann@", id="no-domain"),
        pytest.param("@example.com", id="no-local-part"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_email_is_refused_naming_the_field(email: str) -> None:
    with pytest.raises(ValidationError) as caught:
        register(email=email)
    assert [error["loc"] for error in caught.value.errors()] == [("email",)]


def test_full_name_cannot_be_blank() -> None:
    with pytest.raises(ValidationError) as caught:
        register(full_name="   ")
    assert caught.value.errors()[0]["loc"] == ("full_name",)
