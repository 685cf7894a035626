"""Sharing slots between organizations: the claim's plan (`share`) as a property, and the
solver's `FairLimiter`."""

import uuid
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.jobs.fairness import Backlog, Caps, FairLimiter, Tenant, in_line, share

ORGANIZATIONS: list[Tenant] = [None, *(uuid.UUID(int=n) for n in range(1, 6))]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def situations(draw: st.DrawFn) -> dict:  # type: ignore[type-arg]
    chosen = draw(st.lists(st.sampled_from(ORGANIZATIONS), unique=True, max_size=5))
    backlogs = [
        Backlog(org, draw(st.integers(1, 20)), EPOCH + timedelta(seconds=draw(st.integers(0, 99))))
        for org in chosen
    ]
    here = {org: draw(st.integers(0, 4)) for org in ORGANIZATIONS}
    elsewhere = {org: draw(st.integers(0, 4)) for org in ORGANIZATIONS}
    per_process = draw(st.integers(1, 8))
    total = draw(st.none() | st.integers(1, 12))
    return {
        "backlogs": backlogs,
        "slots": draw(st.integers(0, 10)),
        "caps": Caps(per_process, total),
        "running_here": here,
        "running_total": {org: here[org] + elsewhere[org] for org in ORGANIZATIONS},
    }


def _room(situation: dict, given_: dict, org: Tenant) -> bool:  # type: ignore[type-arg]
    caps: Caps = situation["caps"]
    backlog = next(b for b in situation["backlogs"] if b.organization_id == org)
    taken = given_.get(org, 0)
    return (
        taken < backlog.due
        and situation["running_here"][org] + taken < caps.per_process
        and (caps.total is None or situation["running_total"][org] + taken < caps.total)
    )


@given(situations())
def test_share_fills_free_slots_fairly_within_the_caps(situation: dict) -> None:  # type: ignore[type-arg]
    shares = share(
        situation["backlogs"],
        situation["slots"],
        situation["caps"],
        running_total=situation["running_total"],
        running_here=situation["running_here"],
    )
    caps: Caps = situation["caps"]
    assert sum(shares.values()) <= situation["slots"]
    for org, count in shares.items():
        backlog = next(b for b in situation["backlogs"] if b.organization_id == org)
        assert 0 < count <= backlog.due
        assert situation["running_here"][org] + count <= max(
            caps.per_process, situation["running_here"][org]
        )
        if caps.total is not None:
            assert situation["running_total"][org] + count <= max(
                caps.total, situation["running_total"][org]
            )
    waiting = [
        b.organization_id
        for b in situation["backlogs"]
        if _room(situation, shares, b.organization_id)
    ]
    if sum(shares.values()) < situation["slots"]:
        assert waiting == [], "a slot stayed free while an organization could have used it"
    # Fair: an organization that got a slot had no more running (with it) than one left
    # waiting with room, before that slot.
    for org, count in shares.items():
        for other in waiting:
            assert situation["running_total"][org] + count - 1 <= situation["running_total"][
                other
            ] + shares.get(other, 0)


def test_share_prefers_the_oldest_backlog_between_equals() -> None:
    a, b = uuid.UUID(int=1), uuid.UUID(int=2)
    backlogs = [Backlog(a, 5, EPOCH + timedelta(seconds=5)), Backlog(b, 5, EPOCH)]
    assert share(backlogs, 1, Caps(8), running_total={}, running_here={}) == {b: 1}
    assert share(backlogs, 3, Caps(8), running_total={b: 2}, running_here={}) == {a: 2, b: 1}
    served_a_last = {a: 7, b: 3}
    assert share(
        backlogs, 1, Caps(8), running_total={}, running_here={}, last_served=served_a_last
    ) == {b: 1}
    assert share(backlogs, 1, Caps(8), running_total={}, running_here={}, last_served={b: 3}) == {
        a: 1
    }, "never served goes first"


@pytest.mark.anyio
async def test_the_fair_limiter_serves_a_waiting_organization_before_a_busy_one() -> None:
    limiter = FairLimiter(capacity=1, per_key=1)
    order: list[str] = []
    release = anyio.Event()

    async def solve(key: str, name: str) -> None:
        async with limiter.slot(key):
            order.append(name)
            await release.wait()

    async with anyio.create_task_group() as group:
        for name in ("a1", "a2", "a3"):
            group.start_soon(solve, "a", name)
            await anyio.wait_all_tasks_blocked()
        assert limiter.would_wait("b")
        group.start_soon(solve, "b", "b1")
        await anyio.wait_all_tasks_blocked()
        assert order == ["a1"]
        release.set()
    assert order == ["a1", "b1", "a2", "a3"], "B is served before A's later solves"


@pytest.mark.anyio
async def test_the_fair_limiter_caps_one_key_and_passes_on_a_cancelled_grant() -> None:
    limiter = FairLimiter(capacity=3, per_key=2)
    async with limiter.slot("a"), limiter.slot("a"):
        assert limiter.would_wait("a")
        assert not limiter.would_wait("b")
        with anyio.move_on_after(0.01):
            async with limiter.slot("a"):
                pytest.fail("a third slot for one key")
        async with limiter.slot("b"):
            assert limiter.holders("b") == 1
    assert limiter.holders("a") == 0


def test_in_line_orders_the_organizations_with_room_as_share_serves_them() -> None:
    a, b, c, d = (uuid.UUID(int=n) for n in range(1, 5))
    oldest = {a: EPOCH, b: EPOCH + timedelta(seconds=1), c: EPOCH, d: EPOCH}
    running_total = {a: 2, b: 0, c: 0, d: 3}
    in_line_now = in_line(
        oldest,
        3,
        Caps(per_process=3, total=3),
        running_total=running_total,
        running_here={a: 1},
        last_served={c: 5},
    )
    # d is at its total cap; b and c run nothing (b never served, c served), then a.
    assert in_line_now == [b, c, a]
    assert in_line(oldest, 1, Caps(3), running_total=running_total, running_here={}) == [c]


@pytest.mark.anyio
async def test_the_fair_limiter_says_a_slot_waits_only_once_it_is_in_line() -> None:
    """`on_wait` runs after the waiter joined the line: whoever learns of the wait from it
    (a schedule's `waiting` phase) sees a line that already holds the waiter."""
    limiter = FairLimiter(capacity=1, per_key=1)
    seen_in_line: list[bool] = []

    async def note_wait() -> None:
        seen_in_line.append(limiter.would_wait("a") and len(limiter._waiters) == 1)

    async with limiter.slot("a", on_wait=note_wait):
        assert seen_in_line == [], "a granted slot never waited"
        with anyio.move_on_after(0.01):
            async with limiter.slot("b", on_wait=note_wait):
                pytest.fail("the slot is held")
    assert seen_in_line == [True]
    assert limiter.holders("b") == 0
    assert not limiter._waiters, "the given-up wait left the line"


@pytest.mark.anyio
async def test_the_fair_limiter_leaves_the_line_when_announcing_the_wait_fails() -> None:
    limiter = FairLimiter(capacity=1, per_key=1)

    async def broken() -> None:
        raise RuntimeError("database gone")

    async with limiter.slot("a"):
        with pytest.raises(RuntimeError):
            async with limiter.slot("b", on_wait=broken):
                pytest.fail("the wait failed")
    async with limiter.slot("b"):
        assert limiter.holders("b") == 1
