"""What presenting a refresh token leads to, before any database is involved."""

import pytest

from tandem.identity.logins import RefreshVerdict, judge_refresh


@pytest.mark.parametrize(
    ("login_revoked", "already_used", "expired", "user_active", "verdict"),
    [
        pytest.param(False, False, False, True, RefreshVerdict.rotate, id="fresh-token-rotates"),
        pytest.param(False, True, False, True, RefreshVerdict.reused, id="used-token-is-reuse"),
        pytest.param(
            False, True, True, True, RefreshVerdict.reused, id="used-and-expired-is-still-reuse"
        ),
        pytest.param(True, True, False, True, RefreshVerdict.signed_out, id="revoked-login-wins"),
        pytest.param(True, False, False, True, RefreshVerdict.signed_out, id="after-logout"),
        pytest.param(False, False, True, True, RefreshVerdict.expired, id="expired"),
        pytest.param(False, False, False, False, RefreshVerdict.inactive, id="inactive-user"),
    ],
)
def test_refresh_verdicts(
    login_revoked: bool,
    already_used: bool,
    expired: bool,
    user_active: bool,
    verdict: RefreshVerdict,
) -> None:
    assert (
        judge_refresh(
            login_revoked=login_revoked,
            already_used=already_used,
            expired=expired,
            user_active=user_active,
        )
        is verdict
    )
