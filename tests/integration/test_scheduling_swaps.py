"""Swaps through the review queue (API.md "Scheduling" and "Review"): checked by the rule
engine when asked for, checked again and executed on approval, on SQLite and PostgreSQL."""

import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.notifications.models import OutboxMessage
from tests.conftest import LoginAs
from tests.factories import make_user
from tests.integration.scheduling_setup import SchedulingApi

pytestmark = pytest.mark.anyio

NO_LONGER_HOLDS = "Approved, but it cannot be carried out: the swap no longer holds: "

MONDAY = date(2027, 3, 1)


@pytest.fixture
async def admin(db_session: AsyncSession) -> User:
    """Changes schedules and decides reviews (schedule:write and review:write)."""
    return await make_user(Role.admin)


@pytest.fixture
async def api(client: httpx.AsyncClient, login_as: LoginAs, admin: User) -> SchedulingApi:
    return SchedulingApi(client, await login_as(admin))


@pytest.fixture
async def setup(api: SchedulingApi) -> dict[str, Any]:
    """Ada works Monday morning; Bob is free and could take it."""
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    rotation = await api.rotation(name="Clinic")
    ada = await api.person("resident", name="Ada", pgy_level=2)
    bob = await api.person("resident", name="Bob", pgy_level=2)
    assignment = await api.assigned(schedule, ada, blocks[0], rotation)
    return {
        "blocks": blocks,
        "schedule": schedule,
        "rotation": rotation,
        "ada": ada,
        "bob": bob,
        "assignment": assignment,
    }


async def _request(
    api: SchedulingApi, setup: dict[str, Any], to: str = "bob", **extra: Any
) -> httpx.Response:
    """Asks for the swap of `setup`'s assignment as `api`'s user, with `extra` fields."""
    return await api.client.post(
        "/api/v1/swaps",
        json={
            "assignment_id": setup["assignment"]["id"],
            "to_person_id": setup[to]["id"],
            "reason": "Family event",
        }
        | extra,
        headers=api.headers,
    )


async def _resume(
    api: SchedulingApi, thread_id: str, decision: str, **extra: str
) -> httpx.Response:
    body = {"thread_id": thread_id, "decision": decision} | extra
    return await api.client.post("/api/hitl/resume", json=body, headers=api.headers)


async def _holder(api: SchedulingApi, setup: dict[str, Any]) -> str:
    url = f"/api/v1/schedules/{setup['schedule']['id']}/assignments"
    (item,) = (await api.client.get(url, headers=api.headers)).json()["items"]
    assert item["id"] == setup["assignment"]["id"]
    return str(item["person_id"])


async def _swap(api: SchedulingApi, swap_id: str) -> dict[str, Any]:
    return dict((await api.client.get(f"/api/v1/swaps/{swap_id}", headers=api.headers)).json())


async def test_an_approved_swap_changes_hands(api: SchedulingApi, setup: dict[str, Any]) -> None:
    response = await _request(api, setup)
    assert response.status_code == 201, response.text
    swap = response.json()
    assert swap["status"] == "pending"
    assert swap["thread_id"]
    assert (swap["from_person_id"], swap["to_person_id"]) == (
        setup["ada"]["id"],
        setup["bob"]["id"],
    )

    pending = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    (item,) = [i for i in pending["items"] if i["thread_id"] == swap["thread_id"]]
    assert item["kind"] == "swap"
    assert "Ada" in item["preview"]
    assert "Bob" in item["preview"]

    approved = await _resume(api, swap["thread_id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "published"
    assert "approved" in approved.json()["message"]
    assert await _holder(api, setup) == setup["bob"]["id"]
    assert (await _swap(api, swap["id"]))["status"] == "approved"
    pending_after = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    assert swap["thread_id"] not in {i["thread_id"] for i in pending_after["items"]}


async def test_a_swap_that_breaks_a_rule_is_refused_with_the_violations(
    api: SchedulingApi, setup: dict[str, Any]
) -> None:
    absent = await api.client.post(
        f"/api/v1/people/{setup['bob']['id']}/absences",
        json={"start_date": MONDAY.isoformat(), "end_date": MONDAY.isoformat(), "kind": "leave"},
        headers=api.headers,
    )
    assert absent.status_code == 201, absent.text
    # "leave" is accepted as the kind "other"
    assert (absent.json()["person_id"], absent.json()["kind"]) == (setup["bob"]["id"], "other")
    response = await _request(api, setup)
    assert response.status_code == 422, response.text
    body = response.json()
    assert [(v["rule"], v["person_id"], v["block_id"]) for v in body["violations"]] == [
        ("absence", setup["bob"]["id"], setup["blocks"][0]["id"])
    ]
    assert body["detail"][0]["loc"] == ["body", "to_person_id"]
    assert body["detail"][0]["type"] == "schedule_rule.absence"
    assert body["detail"][0]["msg"] == body["violations"][0]["message"]
    pending = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    assert pending["count"] == 0  # nothing waits for review
    assert await _holder(api, setup) == setup["ada"]["id"]


async def test_a_swap_into_a_double_booking_is_refused(
    api: SchedulingApi, setup: dict[str, Any]
) -> None:
    other = await api.rotation(name="Procedures", kind="procedures")
    await api.assigned(setup["schedule"], setup["bob"], setup["blocks"][0], other)
    response = await _request(api, setup)
    assert response.status_code == 422, response.text
    assert {v["rule"] for v in response.json()["violations"]} == {"double_booking"}


async def test_a_swap_invalidated_before_approval_is_409(
    api: SchedulingApi, setup: dict[str, Any]
) -> None:
    swap = (await _request(api, setup)).json()
    # Between the request and the decision, Bob is given leave that day.
    await api.client.post(
        f"/api/v1/people/{setup['bob']['id']}/absences",
        json={"start_date": MONDAY.isoformat(), "end_date": MONDAY.isoformat()},
        headers=api.headers,
    )
    response = await _resume(api, swap["thread_id"], "approve")
    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith(NO_LONGER_HOLDS)
    assert "absen" in response.json()["detail"].lower()
    assert await _holder(api, setup) == setup["ada"]["id"]
    assert (await _swap(api, swap["id"]))["status"] == "invalidated"
    thread = (await api.client.get(f"/api/hitl/{swap['thread_id']}", headers=api.headers)).json()
    assert thread["status"] == "failed"
    again = await _resume(api, swap["thread_id"], "approve")
    assert again.status_code == 409, again.text
    assert again.json() == {
        "detail": f"Thread {swap['thread_id']} is failed, not pending_review: "
        "it takes no decision now"
    }


async def test_a_swap_whose_assignment_changed_hands_is_409(
    api: SchedulingApi, setup: dict[str, Any]
) -> None:
    carol = await api.person("resident", name="Carol", pgy_level=1)
    to_bob = (await _request(api, setup)).json()
    to_carol = (await _request(api, setup | {"bob": carol})).json()
    assert (await _resume(api, to_carol["thread_id"], "approve")).status_code == 200
    late = await _resume(api, to_bob["thread_id"], "approve")
    assert late.status_code == 409, late.text
    assert "given to someone else" in late.json()["detail"]
    assert await _holder(api, setup) == carol["id"]
    assert (await _swap(api, to_bob["id"]))["status"] == "invalidated"


async def test_a_rejected_swap_changes_nothing(api: SchedulingApi, setup: dict[str, Any]) -> None:
    swap = (await _request(api, setup)).json()
    response = await _resume(api, swap["thread_id"], "reject", feedback="Not this week")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"
    assert (await _swap(api, swap["id"]))["status"] == "rejected"
    assert await _holder(api, setup) == setup["ada"]["id"]


async def test_a_swap_cannot_be_edited(api: SchedulingApi, setup: dict[str, Any]) -> None:
    swap = (await _request(api, setup)).json()
    response = await _resume(api, swap["thread_id"], "edit", feedback="Make it Carol")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"] == "edit is not allowed for swap threads"
    thread = (await api.client.get(f"/api/hitl/{swap['thread_id']}", headers=api.headers)).json()
    assert thread["status"] == "pending_review"
    assert (await _swap(api, swap["id"]))["status"] == "pending"


@pytest.mark.parametrize(
    ("to", "message"),
    [
        pytest.param("ada", "already belongs to this person", id="same-person"),
        pytest.param("faculty", "A faculty cannot take a primary assignment", id="wrong-type"),
    ],
)
async def test_impossible_swaps_are_422(
    api: SchedulingApi, setup: dict[str, Any], to: str, message: str
) -> None:
    setup["faculty"] = await api.person("faculty")
    response = await _request(api, setup, to=to)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"][0]["msg"]


async def test_another_tenants_assignment_cannot_be_swapped(
    client: httpx.AsyncClient, login_as: LoginAs, setup: dict[str, Any]
) -> None:
    stranger = SchedulingApi(client, await login_as(await make_user(Role.admin)))
    mine = await stranger.person("resident", pgy_level=2)
    response = await stranger.client.post(
        "/api/v1/swaps",
        json={
            "assignment_id": setup["assignment"]["id"],
            "to_person_id": mine["id"],
            "reason": "Let me",
        },
        headers=stranger.headers,
    )
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"Assignment {setup['assignment']['id']} not found"}


async def test_a_swap_whose_assignment_was_deleted_is_409(
    api: SchedulingApi, setup: dict[str, Any]
) -> None:
    swap = (await _request(api, setup)).json()
    deleted = await api.client.delete(
        f"/api/v1/schedules/{setup['schedule']['id']}/assignments/{setup['assignment']['id']}",
        headers=api.headers,
    )
    assert deleted.status_code == 204, deleted.text
    response = await _resume(api, swap["thread_id"], "approve")
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": NO_LONGER_HOLDS + "the assignment was deleted"}
    after = await _swap(api, swap["id"])
    assert (after["status"], after["assignment_id"]) == ("invalidated", None)


async def test_a_swap_whose_person_was_deleted_leaves_the_queue(
    api: SchedulingApi, setup: dict[str, Any]
) -> None:
    swap = (await _request(api, setup)).json()
    deleted = await api.client.delete(f"/api/v1/people/{setup['bob']['id']}", headers=api.headers)
    assert deleted.status_code == 204, deleted.text
    response = await _resume(api, swap["thread_id"], "approve")
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": NO_LONGER_HOLDS + "a person in it was deleted"}
    thread = (await api.client.get(f"/api/hitl/{swap['thread_id']}", headers=api.headers)).json()
    assert thread["status"] == "failed"
    pending = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    assert pending["count"] == 0


# --- swaps people can use: acceptance, exchange, withdrawal, the past, e-mail -----------------


async def _person_user(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, person: dict[str, Any]
) -> SchedulingApi:
    """The person signed in as a member of the organization (schedule:read only)."""
    user = await make_user(
        Role.member, organization_id=admin.organization_id, email=person["email"]
    )
    return SchedulingApi(client, await login_as(user))


async def _mails(db_session: AsyncSession) -> list[tuple[str, str]]:
    rows = (
        await db_session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at))
    ).all()
    return [(row.recipient, row.subject.split(":")[0]) for row in rows]


async def test_a_holder_asks_the_counterpart_accepts_the_coordinator_approves(
    api: SchedulingApi,
    setup: dict[str, Any],
    client: httpx.AsyncClient,
    login_as: LoginAs,
    admin: User,
    db_session: AsyncSession,
) -> None:
    ada = await _person_user(client, login_as, admin, setup["ada"])
    bob = await _person_user(client, login_as, admin, setup["bob"])
    asked = await _request(ada, setup)
    assert asked.status_code == 201, asked.text
    swap = asked.json()
    assert (swap["kind"], swap["needs_acceptance"], swap["accepted_at"]) == (
        "give_away",
        True,
        None,
    )
    # The counterpart, and the coordinators (here the admin) who did not ask for it.
    assert sorted(await _mails(db_session)) == sorted(
        [(setup["bob"]["email"], "Swap requested"), (admin.email, "Swap requested")]
    )

    early = await _resume(api, swap["thread_id"], "approve")
    assert early.status_code == 409, early.text
    assert early.json() == {"detail": "The counterpart has not accepted this swap yet"}
    thread = (await api.client.get(f"/api/hitl/{swap['thread_id']}", headers=api.headers)).json()
    assert thread["status"] == "pending_review"
    assert await _holder(api, setup) == setup["ada"]["id"]

    not_theirs = await ada.client.post(f"/api/v1/swaps/{swap['id']}/accept", headers=ada.headers)
    assert not_theirs.status_code == 403, not_theirs.text
    assert not_theirs.json() == {
        "detail": "Only the counterpart (or a coordinator for them) can accept this swap"
    }
    accepted = await bob.client.post(f"/api/v1/swaps/{swap['id']}/accept", headers=bob.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted_at"] is not None
    again = await bob.client.post(f"/api/v1/swaps/{swap['id']}/accept", headers=bob.headers)
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "This swap was already accepted"}

    approved = await _resume(api, swap["thread_id"], "approve")
    assert approved.status_code == 200, approved.text
    assert await _holder(api, setup) == setup["bob"]["id"]
    assert (await _swap(api, swap["id"]))["status"] == "approved"
    assert sorted((await _mails(db_session))[2:]) == sorted(
        [(setup["ada"]["email"], "Swap approved"), (setup["bob"]["email"], "Swap approved")]
    )


async def test_someone_else_cannot_ask_for_a_holders_swap(
    setup: dict[str, Any], client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    bob = await _person_user(client, login_as, admin, setup["bob"])
    response = await _request(bob, setup)
    assert response.status_code == 403, response.text
    assert "holder" in response.json()["detail"]


async def _exchange(api: SchedulingApi) -> tuple[dict[str, Any], ...]:
    """Ada works Monday AM, Bob Tuesday AM; a coordinator asks for their exchange."""
    tuesday = MONDAY + timedelta(days=1)
    blocks = await api.blocks(MONDAY, tuesday)
    schedule = await api.schedule(MONDAY, tuesday)
    ward = await api.rotation(name="Ward")
    ada = await api.person("resident", name="Ada", pgy_level=2)
    bob = await api.person("resident", name="Bob", pgy_level=2)
    mine = await api.assigned(schedule, ada, blocks[0], ward)
    theirs = await api.assigned(schedule, bob, blocks[2], ward)
    asked = await _request(
        api,
        {"assignment": mine, "bob": bob},
        kind="exchange",
        counter_assignment_id=theirs["id"],
    )
    assert asked.status_code == 201, asked.text
    return schedule, ada, bob, mine, theirs, asked.json()


async def test_an_exchange_trades_both_assignments_at_once(api: SchedulingApi) -> None:
    schedule, ada, bob, mine, theirs, swap = await _exchange(api)
    assert (swap["kind"], swap["counter_assignment_id"], swap["needs_acceptance"]) == (
        "exchange",
        theirs["id"],
        False,  # arranged by a coordinator: no acceptance step, as before
    )
    pending = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    (item,) = pending["items"]
    assert "Ada gives Ward (primary) on 2027-03-01 AM to Bob" in item["preview"]
    assert "takes Ward (primary) on 2027-03-02 AM in return" in item["preview"]
    approved = await _resume(api, swap["thread_id"], "approve")
    assert approved.status_code == 200, approved.text
    listed = await api.client.get(
        f"/api/v1/schedules/{schedule['id']}/assignments", headers=api.headers
    )
    holders = {a["id"]: a["person_id"] for a in listed.json()["items"]}
    assert holders == {mine["id"]: bob["id"], theirs["id"]: ada["id"]}


async def test_an_exchange_whose_counter_assignment_moved_changes_nothing(
    api: SchedulingApi,
) -> None:
    schedule, ada, _, mine, theirs, swap = await _exchange(api)
    url = f"/api/v1/schedules/{schedule['id']}/assignments"
    await api.client.delete(f"{url}/{theirs['id']}", headers=api.headers)
    response = await _resume(api, swap["thread_id"], "approve")
    assert response.status_code == 409, response.text
    assert response.json() == {
        "detail": NO_LONGER_HOLDS + "the assignment given in return was deleted"
    }
    (item,) = (await api.client.get(url, headers=api.headers)).json()["items"]
    assert (item["id"], item["person_id"]) == (mine["id"], ada["id"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"kind": "exchange"}, "An exchange needs counter_assignment_id", id="no-counter"
        ),
        pytest.param(
            {"counter_assignment_id": str(uuid.uuid4())},
            "counter_assignment_id is for exchanges only",
            id="give-away-with-counter",
        ),
    ],
)
async def test_swap_kinds_are_checked(
    api: SchedulingApi, setup: dict[str, Any], body: dict[str, str], message: str
) -> None:
    response = await _request(api, setup, **body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("who", ["ada", "bob"])
async def test_either_person_can_withdraw_a_pending_swap(
    api: SchedulingApi,
    setup: dict[str, Any],
    client: httpx.AsyncClient,
    login_as: LoginAs,
    admin: User,
    db_session: AsyncSession,
    who: str,
) -> None:
    person = await _person_user(client, login_as, admin, setup[who])
    swap = (await _request(api, setup)).json()
    withdrawn = await person.client.post(
        f"/api/v1/swaps/{swap['id']}/withdraw", headers=person.headers
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"
    pending = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    assert swap["thread_id"] not in {i["thread_id"] for i in pending["items"]}
    late = await _resume(api, swap["thread_id"], "approve")
    assert late.status_code == 409, late.text
    assert late.json() == {
        "detail": f"Thread {swap['thread_id']} is failed, not pending_review: "
        "it takes no decision now"
    }
    assert await _holder(api, setup) == setup["ada"]["id"]
    twice = await person.client.post(f"/api/v1/swaps/{swap['id']}/withdraw", headers=person.headers)
    assert twice.status_code == 409, twice.text
    assert twice.json() == {"detail": "This swap is withdrawn, no longer pending"}
    assert ("Swap withdrawn" in {s for _, s in await _mails(db_session)}) is True


async def test_a_stranger_cannot_withdraw_or_accept(
    api: SchedulingApi,
    setup: dict[str, Any],
    client: httpx.AsyncClient,
    login_as: LoginAs,
    admin: User,
) -> None:
    carol = await api.person("resident", name="Carol", pgy_level=2)
    stranger = await _person_user(client, login_as, admin, carol)
    swap = (await _request(api, setup)).json()
    for action in ("withdraw", "accept"):
        response = await stranger.client.post(
            f"/api/v1/swaps/{swap['id']}/{action}", headers=stranger.headers
        )
        assert response.status_code == 403, action
    assert (await _swap(api, swap["id"]))["status"] == "pending"


async def test_a_swap_in_the_past_is_refused(api: SchedulingApi) -> None:
    past = date(2020, 1, 6)
    blocks = await api.blocks(past, past)
    schedule = await api.schedule(past, past)
    ward = await api.rotation(name="Ward")
    ada = await api.person("resident", name="Ada", pgy_level=2)
    bob = await api.person("resident", name="Bob", pgy_level=2)
    done = await api.assigned(schedule, ada, blocks[0], ward)
    response = await api.client.post(
        "/api/v1/swaps",
        json={"assignment_id": done["id"], "to_person_id": bob["id"], "reason": "Late"},
        headers=api.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"] == (
        "The duty on 2020-01-06 AM is in the past: swaps are for duty still to come"
    )
    pending = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    assert pending["count"] == 0


async def test_a_swap_invalidated_between_acceptance_and_approval_is_409(
    api: SchedulingApi,
    setup: dict[str, Any],
    client: httpx.AsyncClient,
    login_as: LoginAs,
    admin: User,
    db_session: AsyncSession,
) -> None:
    bob = await _person_user(client, login_as, admin, setup["bob"])
    swap = (await _request(api, setup, needs_acceptance=True)).json()
    accepted = await bob.client.post(f"/api/v1/swaps/{swap['id']}/accept", headers=bob.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "pending"
    assert accepted.json()["accepted_at"] is not None
    absent = await api.client.post(
        f"/api/v1/people/{setup['bob']['id']}/absences",
        json={"start_date": MONDAY.isoformat(), "end_date": MONDAY.isoformat(), "kind": "sick"},
        headers=api.headers,
    )
    assert absent.status_code == 201, absent.text
    assert (absent.json()["person_id"], absent.json()["kind"]) == (setup["bob"]["id"], "sick")
    approved = await _resume(api, swap["thread_id"], "approve")
    assert approved.status_code == 409, approved.text
    assert approved.json()["detail"].startswith(NO_LONGER_HOLDS + "Bob is absent from")
    assert (await _swap(api, swap["id"]))["status"] == "invalidated"
    assert await _holder(api, setup) == setup["ada"]["id"]
    assert {s for _, s in await _mails(db_session)} == {"Swap requested", "Swap not carried out"}


async def test_a_swap_request_tells_the_counterpart_and_the_other_coordinators(
    api: SchedulingApi, setup: dict[str, Any], admin: User, db_session: AsyncSession
) -> None:
    org = admin.organization_id
    await make_user(Role.coordinator, org, email="coord@example.com")
    await make_user(Role.coordinator, org, email="away@example.com", is_active=False)
    await make_user(Role.reviewer, org, email="rev@example.com")
    await make_user(Role.coordinator, email="elsewhere@example.com")
    asked = await _request(api, setup)  # by the admin, a coordinator too
    assert asked.status_code == 201, asked.text
    assert sorted(await _mails(db_session)) == sorted(
        [(setup["bob"]["email"], "Swap requested"), ("coord@example.com", "Swap requested")]
    )
    told = await db_session.scalar(
        select(OutboxMessage).where(OutboxMessage.recipient == "coord@example.com")
    )
    assert told is not None
    assert "Ada hands Clinic" in told.subject
    assert asked.json()["thread_id"] in told.body
    assert "Family event" in told.body
