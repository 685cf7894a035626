"""CredentialCache alone: what it serves, and for how long (identity/credential_cache.py)."""

from datetime import UTC, datetime, timedelta

import pytest

from tandem.identity import credential_cache
from tandem.identity.credential_cache import CredentialCache

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def test_an_entry_is_served_while_the_epoch_it_was_stamped_with_holds() -> None:
    cache = CredentialCache()
    stamp = await cache.stamp()
    cache.put("key", stamp, "principal", None)

    assert cache.get("key", await cache.stamp(), NOW) == "principal"
    credential_cache._bump_local()
    assert cache.get("key", await cache.stamp(), NOW) is None


async def test_an_entry_stamped_before_a_change_is_never_served_after_it() -> None:
    """The lookup read the old row while a change committed: its stamp is already stale."""
    cache = CredentialCache()
    stamp = await cache.stamp()  # read before the lookup's query
    credential_cache._bump_local()  # a change commits meanwhile
    cache.put("key", stamp, "old principal", None)

    assert cache.get("key", await cache.stamp(), NOW) is None


async def test_an_entry_is_not_served_past_its_credentials_end() -> None:
    cache = CredentialCache()
    stamp = await cache.stamp()
    cache.put("key", stamp, "principal", NOW + timedelta(seconds=1))

    assert cache.get("key", stamp, NOW) == "principal"
    assert cache.get("key", stamp, NOW + timedelta(seconds=1)) is None


async def test_an_entry_is_not_served_longer_than_entry_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = CredentialCache()
    stamp = await cache.stamp()
    cache.put("key", stamp, "principal", None)
    later = credential_cache.time.monotonic() + credential_cache.ENTRY_SECONDS
    monkeypatch.setattr(credential_cache.time, "monotonic", lambda: later)

    assert cache.get("key", stamp, NOW) is None


async def test_the_oldest_entry_goes_first_when_the_cache_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(credential_cache, "MAX_ENTRIES", 2)
    cache = CredentialCache()
    stamp = await cache.stamp()
    for key in ("a", "b", "c"):
        cache.put(key, stamp, key.upper(), None)

    assert [cache.get(key, stamp, NOW) for key in ("a", "b", "c")] == [None, "B", "C"]
