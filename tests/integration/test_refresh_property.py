"""Property: whatever clients do, a login never has two usable refresh tokens."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.errors import Unauthorized
from tandem.identity import logins
from tandem.identity.models import LoginSession, RefreshToken, User
from tandem.identity.security import TokenSigner
from tests.factories import make_user

pytestmark = pytest.mark.anyio

SIGNER = TokenSigner(secret="p" * 64, issuer="tandem", algorithm="HS256", ttl=timedelta(minutes=5))
REFRESH_TTL = timedelta(days=1)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.just(0)),
        st.tuples(st.just("login"), st.integers(0, 3)),  # which user
        st.tuples(st.just("refresh"), st.integers(0, 30)),  # which token ever issued
        st.tuples(st.just("logout"), st.integers(0, 30)),
    ),
    min_size=1,
    max_size=15,
)


async def usable_tokens_per_login(session: AsyncSession, users: list[User]) -> dict[object, int]:
    rows = (
        await session.execute(
            select(LoginSession.id, LoginSession.revoked_at, RefreshToken.used_at)
            .join(RefreshToken, RefreshToken.session_id == LoginSession.id)
            .where(LoginSession.user_id.in_([u.id for u in users]))
        )
    ).all()
    counts: dict[object, int] = {}
    for login_id, revoked_at, used_at in rows:
        counts.setdefault(login_id, 0)
        if revoked_at is None and used_at is None:
            counts[login_id] += 1
    return counts


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
async def test_no_sequence_leaves_two_usable_refresh_tokens_of_one_login(
    db_session: AsyncSession, steps: list[tuple[str, int]]
) -> None:
    users: list[User] = [await make_user()]
    issued: list[str] = []
    for operation, index in steps:
        if operation == "register":
            users.append(await make_user())
            operation, index = "login", len(users) - 1
        if operation == "login":
            tokens = await logins.start_login(
                db_session, SIGNER, REFRESH_TTL, users[index % len(users)]
            )
            issued.append(tokens.refresh_token)
        elif operation == "refresh" and issued:
            try:
                rotated = await logins.refresh(
                    db_session, SIGNER, REFRESH_TTL, issued[index % len(issued)]
                )
            except Unauthorized:
                pass
            else:
                issued.append(rotated.refresh_token)
        elif operation == "logout" and issued:
            await logins.logout(db_session, issued[index % len(issued)])

        counts = await usable_tokens_per_login(db_session, users)
        assert all(count <= 1 for count in counts.values()), counts
        # And none is lost: a login that is not revoked still has its one usable token.
        live = await db_session.scalars(
            select(LoginSession.id).where(
                LoginSession.user_id.in_([u.id for u in users]),
                LoginSession.revoked_at.is_(None),
            )
        )
        assert all(counts[login_id] == 1 for login_id in live)


async def test_a_refresh_token_presented_twice_revokes_the_login(db_session: AsyncSession) -> None:
    """The second presentation is reuse: neither the old nor the rotated token survives."""
    user = await make_user()
    tokens = await logins.start_login(db_session, SIGNER, REFRESH_TTL, user)
    winner = await logins.refresh(db_session, SIGNER, REFRESH_TTL, tokens.refresh_token)
    with pytest.raises(logins.RefreshTokenReused):
        await logins.refresh(db_session, SIGNER, REFRESH_TTL, tokens.refresh_token)
    with pytest.raises(Unauthorized, match="signed out"):
        await logins.refresh(db_session, SIGNER, REFRESH_TTL, winner.refresh_token)
    login = await db_session.scalar(select(LoginSession).where(LoginSession.user_id == user.id))
    assert login is not None
    assert login.revoked_reason == "refresh_token_reused"
    assert login.revoked_at is not None
    assert login.revoked_at <= datetime.now(UTC)
