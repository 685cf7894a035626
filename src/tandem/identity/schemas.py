"""HTTP shapes of the identity API (API.md, "Identity")."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from tandem.identity.scopes import Role, Scope
from tandem.patch import Patch

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


def _password_policy(value: str) -> str:
    if len(value) < MIN_PASSWORD_LENGTH:
        raise PydanticCustomError(
            "password_too_short",
            f"Password too short: at least {MIN_PASSWORD_LENGTH} characters",
        )
    if len(value) > MAX_PASSWORD_LENGTH:
        raise PydanticCustomError(
            "password_too_long", f"Password too long: at most {MAX_PASSWORD_LENGTH} characters"
        )
    if not value.strip():
        raise PydanticCustomError("password_blank", "Password cannot be only spaces")
    return value


def _normalise_email(value: str) -> str:
    return value.strip().lower()


# The rule is checked by `_password_policy` (for its message) and stated in the schema.
Password = Annotated[
    str,
    AfterValidator(_password_policy),
    WithJsonSchema(
        {"type": "string", "minLength": MIN_PASSWORD_LENGTH, "maxLength": MAX_PASSWORD_LENGTH}
    ),
]
Email = Annotated[EmailStr, AfterValidator(_normalise_email)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class RegisterIn(BaseModel):
    email: Email
    password: Password
    full_name: Name
    organization_name: Name | None = None


class LoginIn(BaseModel):
    email: Email
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
    scopes: list[str] | None = None
    # Only needed when the e-mail and password open accounts in several organizations.
    organization_id: uuid.UUID | None = None


class RefreshIn(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    organization_id: uuid.UUID
    is_active: bool
    created_at: datetime


class MeOut(UserOut):
    scopes: list[Scope]


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    scope: str = Field(description="The token's scopes, separated by spaces")


class RegisterOut(BaseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreateIn(BaseModel):
    email: Email
    password: Password
    full_name: Name
    role: Role = Role.member


class UserUpdateIn(Patch):
    not_null = frozenset({"full_name", "role", "is_active"})

    full_name: Name | None = None
    role: Role | None = None
    is_active: bool | None = None


class OrganizationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime


class ProjectIn(BaseModel):
    name: Name
    description: Annotated[str, Field(max_length=5000)] | None = None


class ProjectUpdateIn(Patch):
    not_null = frozenset({"name"})

    name: Name | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    description: str | None
    owner_id: uuid.UUID
    organization_id: uuid.UUID
    created_at: datetime


class ApiKeyIn(BaseModel):
    name: Name
    scopes: Annotated[list[Scope], Field(min_length=1)]
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The key itself: shown only in this response, stored as a hash")


Token = Annotated[str, Field(min_length=1, max_length=200, description="The token in the link")]


class InvitationIn(BaseModel):
    email: Email
    role: Role = Role.member


class InvitationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: Role
    organization_id: uuid.UUID
    created_at: datetime
    expires_at: datetime


class AcceptInvitationIn(BaseModel):
    token: Token
    password: Password
    full_name: Name


class VerifyEmailIn(BaseModel):
    token: Token


class PasswordResetIn(BaseModel):
    email: Email


class PasswordResetConfirmIn(BaseModel):
    token: Token
    password: Password


class NoticeOut(BaseModel):
    detail: str
