"""Swaps: one person hands an assignment to another (give-away) or two people trade
(exchange), through the review queue.

`POST /swaps` checks the swapped schedule with the rule engine (both people, every window the
swap touches) and, if it keeps every rule, opens a review thread of kind `swap` and e-mails
the counterpart. When the swap needs the counterpart's acceptance (always when the holder asks
for it themselves; a coordinator arranging one may skip it) the counterpart accepts with
`POST /swaps/{id}/accept` before a coordinator may approve; either person (or a coordinator)
may withdraw it while pending. A reviewer's approval (`POST /api/hitl/resume`) comes to
`SwapReview.approve`, which checks again against the schedule as it is now and executes the
swap with updates guarded on each assignment still being its holder's, all or nothing. Both
people are e-mailed the decision. Duty in the past is never swapped.
"""

import uuid
from dataclasses import replace
from typing import Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import compare_and_set, utcnow
from tandem.errors import Conflict, Forbidden, Invalid
from tandem.identity.models import User
from tandem.identity.principal import Principal
from tandem.identity.scopes import Role, Scope, scopes_for
from tandem.notifications.service import enqueue_email
from tandem.review.kinds import (
    ApprovalNotCarriedOut,
    DecisionContext,
    Outcome,
    ReviewKind,
)
from tandem.review.models import ReviewThread
from tandem.review.service import open_thread
from tandem.review.states import ThreadStatus
from tandem.scheduling import domain, rules, service, states
from tandem.scheduling.domain import TimeOfDay
from tandem.scheduling.models import (
    Assignment,
    Block,
    Person,
    Rotation,
    Schedule,
    Swap,
    SwapKind,
    SwapStatus,
)
from tandem.scheduling.problem import load_problem
from tandem.scheduling.schemas import SwapIn, ViolationOut
from tandem.tenancy import owned
from tandem.webhooks.schemas import Event
from tandem.webhooks.service import emit

SWAP_KIND = "swap"


class SwapBreaksRules(Invalid):
    """422 in FastAPI's list shape, one entry per violation, plus the violations themselves
    in the validation endpoint's shape so clients can show them the same way."""

    def __init__(self, violations: tuple[domain.Violation, ...]) -> None:
        super().__init__(
            f"The swap breaks {len(violations)} scheduling rule(s)", loc=("body", "to_person_id")
        )
        self.violations = violations

    def body(self) -> dict[str, Any]:
        return {
            "detail": [
                {"loc": self.loc, "msg": v.message, "type": f"schedule_rule.{v.rule.value}"}
                for v in self.violations
            ],
            "violations": [ViolationOut.of(v).model_dump(mode="json") for v in self.violations],
        }


def swap_violations(
    problem: domain.ScheduleProblem,
    assignment_id: uuid.UUID,
    to_person_id: uuid.UUID,
    *,
    counter_assignment_id: uuid.UUID | None = None,
) -> tuple[domain.Violation, ...]:
    """The violations the swap adds, checked in every 28-day window holding a date it touches.

    A give-away hands `assignment_id` to `to_person_id`; an exchange (`counter_assignment_id`,
    the counterpart's) also hands the counterpart's assignment to the giving person. A
    violation already there before the swap is not the swap's doing. In a give-away, those
    about the person giving the assignment away are left out too: losing a duty cannot make
    their hours or days off worse, only change the figures in a message that was already
    there. In an exchange both people take on a duty, so both are checked.
    """
    by_id = {a.id: a for a in problem.assignments}
    assignment = by_id[assignment_id]
    moves = {assignment_id: to_person_id}
    if counter_assignment_id is not None:
        moves[counter_assignment_id] = assignment.person_id
    days = [problem.blocks[by_id[a].block_id].date for a in moves]
    around = (min(days), max(days))
    before = set(rules.validate(problem, around=around).violations)
    swapped = replace(
        problem,
        assignments=tuple(
            replace(a, person_id=moves[a.id]) if a.id in moves else a for a in problem.assignments
        ),
    )
    after = rules.validate(swapped, around=around).violations
    spared = assignment.person_id if counter_assignment_id is None else None
    return tuple(v for v in after if v not in before and v.person_id != spared)


def _in_the_past(block: Block) -> bool:
    """Before the block running now (AM before noon UTC, PM after): a duty already done."""
    day, time_of_day = service.block_key_at(utcnow())
    return (block.date, block.time_of_day != TimeOfDay.AM) < (day, time_of_day != TimeOfDay.AM)


async def _user_email(session: AsyncSession, principal: Principal) -> str:
    user = await session.get(User, principal.user_id)
    return "" if user is None else user.email.casefold()


async def _is(session: AsyncSession, principal: Principal, *people: uuid.UUID) -> bool:
    """Whether the signed-in user is one of `people` (a person is a user by e-mail)."""
    email = await _user_email(session, principal)
    for person_id in people:
        person = await session.get(Person, person_id)
        if person is not None and email and person.email.casefold() == email:
            return True
    return False


async def _describe(session: AsyncSession, swap: Swap) -> str:
    from_person = await session.get_one(Person, swap.from_person_id)
    to_person = await session.get_one(Person, swap.to_person_id)
    parts = []
    for assignment_id in (swap.assignment_id, swap.counter_assignment_id):
        assignment = None if assignment_id is None else await session.get(Assignment, assignment_id)
        if assignment is None:
            parts.append("an assignment since deleted")
            continue
        block = await session.get_one(Block, assignment.block_id)
        rotation = await session.get_one(Rotation, assignment.rotation_id)
        parts.append(
            f"{rotation.name} ({assignment.role.value}) on {block.date.isoformat()} "
            f"{block.time_of_day.value}"
        )
    if swap.kind is SwapKind.exchange:
        return (
            f"Swap (exchange): {from_person.name} gives {parts[0]} to {to_person.name} and "
            f"takes {parts[-1]} in return"
        )
    return f"Swap: {from_person.name} hands {parts[0]} to {to_person.name}"


async def _mail(session: AsyncSession, swap: Swap, event: str, text: str, *to: uuid.UUID) -> None:
    """One e-mail per person in `to`, through the outbox (sent only if this commits)."""
    summary = await _describe(session, swap)
    for person_id in to:
        person = await session.get(Person, person_id)
        if person is None:
            continue
        await enqueue_email(
            session,
            to=person.email,
            subject=f"Swap {event}: {summary}"[:300],
            body=f"{summary}.\n\n{text}\n\nReason given: {swap.reason}\nSwap id: {swap.id}",
            organization_id=swap.organization_id,
            dedupe_key=f"swap:{swap.id}:{event}:{person_id}",
        )


# Who is told of every swap request besides its counterpart: whoever may change schedules.
COORDINATOR_ROLES = [role.value for role in Role if Scope.schedule_write in scopes_for(role)]


async def _tell_coordinators(session: AsyncSession, swap: Swap, to_person: Person) -> None:
    """E-mails every active coordinator of the organization about a new swap request, but
    not the one who asked for it, nor the counterpart (told already)."""
    summary = await _describe(session, swap)
    coordinators = await session.scalars(
        select(User)
        .where(
            User.organization_id == swap.organization_id,
            User.is_active.is_(True),
            User.role.in_(COORDINATOR_ROLES),
        )
        .order_by(User.email)
    )
    step = (
        "The counterpart accepts it first; then decide it in the review queue"
        if swap.needs_acceptance
        else "Decide it in the review queue"
    )
    for user in coordinators.all():
        if user.id == swap.requested_by_id or user.email == to_person.email:
            continue
        await enqueue_email(
            session,
            to=user.email,
            subject=f"Swap requested: {summary}"[:300],
            body=f"{summary}.\n\n{step} (thread {swap.thread_id}).\n\n"
            f"Reason given: {swap.reason}\nSwap id: {swap.id}",
            organization_id=swap.organization_id,
            dedupe_key=f"swap:{swap.id}:requested:user:{user.id}",
        )


async def _check_assignment(
    session: AsyncSession, assignment: Assignment, person: Person
) -> tuple[Schedule, Block]:
    """The schedule may be edited, the person can take the assignment's role, and the duty
    is not in the past."""
    schedule = await session.get_one(Schedule, assignment.schedule_id)
    try:
        states.edit_assignments(states.state_of(schedule))
    except states.IllegalTransition as exc:
        raise Conflict(str(exc)) from exc
    if service.role_for(person) is not assignment.role:
        raise Invalid(
            f"A {person.type.value} cannot take a {assignment.role.value} assignment",
            loc=("body", "to_person_id"),
        )
    block = await session.get_one(Block, assignment.block_id)
    if _in_the_past(block):
        raise Invalid(
            f"The duty on {block.date.isoformat()} {block.time_of_day.value} is in the past: "
            "swaps are for duty still to come",
            loc=("body", "assignment_id"),
        )
    return schedule, block


async def request_swap(
    session: AsyncSession, principal: Principal, body: SwapIn, *, quota: int
) -> Swap:
    """A coordinator (schedule:write) may ask for any swap; anyone else only for an assignment
    they hold themselves (their e-mail is the holder's), and then the counterpart must accept
    before approval. `quota`: TANDEM_QUOTA_WAITING_THREADS."""
    assignment = await service.get_assignment(session, principal, body.assignment_id)
    coordinator = principal.has(Scope.schedule_write)
    if not coordinator and not await _is(session, principal, assignment.person_id):
        raise Forbidden("Only a coordinator or the assignment's holder can ask for this swap")
    to_person = await service.get_person(session, principal, body.to_person_id)
    from_person = await session.get_one(Person, assignment.person_id)
    if to_person.id == assignment.person_id:
        raise Invalid("The assignment already belongs to this person", loc=("body", "to_person_id"))
    schedule, _ = await _check_assignment(session, assignment, to_person)
    counter: Assignment | None = None
    if body.counter_assignment_id is not None:
        counter = await service.get_assignment(session, principal, body.counter_assignment_id)
        loc = ("body", "counter_assignment_id")
        if counter.person_id != to_person.id:
            raise Invalid("The counter assignment must be the counterpart's", loc=loc)
        if counter.schedule_id != assignment.schedule_id:
            raise Invalid("An exchange trades assignments of one schedule", loc=loc)
        if counter.block_id == assignment.block_id:
            raise Invalid("An exchange trades assignments of two different blocks", loc=loc)
        await _check_assignment(session, counter, from_person)
    problem = await load_problem(session, schedule)
    violations = swap_violations(
        problem,
        assignment.id,
        to_person.id,
        counter_assignment_id=None if counter is None else counter.id,
    )
    if violations:
        raise SwapBreaksRules(violations)
    swap = Swap(
        organization_id=principal.organization_id,
        assignment_id=assignment.id,
        from_person_id=assignment.person_id,
        to_person_id=to_person.id,
        reason=body.reason,
        status=SwapStatus.pending,
        requested_by_id=principal.user_id,
        kind=body.kind,
        counter_assignment_id=None if counter is None else counter.id,
        needs_acceptance=body.needs_acceptance or not coordinator,
    )
    session.add(swap)
    await session.flush()
    summary = await _describe(session, swap)
    thread = await open_thread(
        session,
        principal,
        kind=SWAP_KIND,
        drafts=[f"{summary}. Reason: {body.reason}"],
        payload={"swap_id": str(swap.id), "assignment_id": str(assignment.id)},
        quota=quota,
    )
    swap.thread_id = thread.id
    await session.flush()
    await _mail(
        session,
        swap,
        "requested",
        f"Accept it with POST /api/v1/swaps/{swap.id}/accept, or withdraw it with "
        f"POST /api/v1/swaps/{swap.id}/withdraw; a coordinator then decides."
        if swap.needs_acceptance
        else "A coordinator arranged it; it takes effect once approved in the review queue.",
        to_person.id,
    )
    await _tell_coordinators(session, swap, to_person)
    data = {
        "swap_id": str(swap.id),
        "assignment_id": str(assignment.id),
        "from_person_id": str(swap.from_person_id),
        "to_person_id": str(swap.to_person_id),
        "thread_id": str(thread.id),
    }
    await emit(session, swap.organization_id, Event.swap_requested, data)
    return swap


async def get_swap(session: AsyncSession, principal: Principal, swap_id: uuid.UUID) -> Swap:
    return await owned(session, principal, Swap, swap_id, "Swap")


def _pending(swap: Swap) -> None:
    if swap.status is not SwapStatus.pending:
        raise Conflict(f"This swap is {swap.status.value}, no longer pending")


async def accept_swap(session: AsyncSession, principal: Principal, swap_id: uuid.UUID) -> Swap:
    """The counterpart accepts (or a coordinator records their acceptance); once."""
    swap = await get_swap(session, principal, swap_id)
    if not principal.has(Scope.schedule_write) and not await _is(
        session, principal, swap.to_person_id
    ):
        raise Forbidden("Only the counterpart (or a coordinator for them) can accept this swap")
    _pending(swap)
    if swap.accepted_at is not None:
        raise Conflict("This swap was already accepted")
    accepted = await compare_and_set(
        session,
        update(Swap)
        .where(Swap.id == swap.id, Swap.status == SwapStatus.pending, Swap.accepted_at.is_(None))
        .values(accepted_at=utcnow(), accepted_by_id=principal.user_id, updated_at=utcnow()),
    )
    if not accepted:
        raise Conflict("This swap changed while it was being accepted")
    await session.refresh(swap)
    return swap


async def withdraw_swap(session: AsyncSession, principal: Principal, swap_id: uuid.UUID) -> Swap:
    """Either person (or a coordinator) takes a pending swap back: it leaves the queue."""
    swap = await get_swap(session, principal, swap_id)
    if not principal.has(Scope.schedule_write) and not await _is(
        session, principal, swap.from_person_id, swap.to_person_id
    ):
        raise Forbidden("Only the two people in this swap (or a coordinator) can withdraw it")
    _pending(swap)
    withdrawn = await compare_and_set(
        session,
        update(Swap)
        .where(Swap.id == swap.id, Swap.status == SwapStatus.pending)
        .values(status=SwapStatus.withdrawn, decided_at=utcnow(), updated_at=utcnow()),
    )
    if not withdrawn:
        raise Conflict("This swap was decided while it was being withdrawn")
    if swap.thread_id is not None:
        await session.execute(
            update(ReviewThread)
            .where(
                ReviewThread.id == swap.thread_id,
                ReviewThread.status == ThreadStatus.pending_review,
            )
            .values(status=ThreadStatus.failed, error="withdrawn", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    await session.refresh(swap)
    await _mail(
        session, swap, "withdrawn", "It was withdrawn.", swap.from_person_id, swap.to_person_id
    )
    return swap


async def check_now(
    session: AsyncSession, principal: Principal, swap_id: uuid.UUID
) -> tuple[Swap, tuple[domain.Violation, ...] | None]:
    """The swap and the violations it would add to the schedule as it is now (what
    approving checks), or None when it cannot be checked: no longer pending, or its
    assignment is gone or has changed hands."""
    swap = await get_swap(session, principal, swap_id)
    assignment = (
        None if swap.assignment_id is None else await session.get(Assignment, swap.assignment_id)
    )
    if (
        swap.status is not SwapStatus.pending
        or assignment is None
        or assignment.person_id != swap.from_person_id
    ):
        return swap, None
    schedule = await session.get_one(Schedule, assignment.schedule_id)
    problem = await load_problem(session, schedule)
    return swap, swap_violations(
        problem, assignment.id, swap.to_person_id, counter_assignment_id=swap.counter_assignment_id
    )


async def _swap_of(decision: DecisionContext) -> Swap | None:
    """The thread's swap; None when it is gone (a person in it was deleted)."""
    swap_id = uuid.UUID(decision.thread.payload["swap_id"])
    swap = await decision.session.scalar(select(Swap).where(Swap.id == swap_id))
    if swap is not None:
        _pending(swap)
    return swap


async def _invalidate(session: AsyncSession, swap: Swap | None, why: str) -> ApprovalNotCarriedOut:
    """Records that the swap cannot be executed any more (telling both people); raising the
    returned error ends its thread as failed (see `tandem.review.kinds.ApprovalNotCarriedOut`)."""
    if swap is not None:
        swap.status, swap.decided_at = SwapStatus.invalidated, utcnow()
        await _mail(
            session,
            swap,
            "not carried out",
            f"It was approved but no longer holds: {why}.",
            swap.from_person_id,
            swap.to_person_id,
        )
    return ApprovalNotCarriedOut(f"the swap no longer holds: {why}")


async def _current(session: AsyncSession, assignment_id: uuid.UUID | None) -> Assignment | None:
    assignment = None if assignment_id is None else await session.get(Assignment, assignment_id)
    if assignment is not None:
        await session.refresh(assignment)  # the row as it is now, not as this session saw it
    return assignment


async def _execute(decision: DecisionContext, swap: Swap) -> str | None:
    """Executes the swap (both assignments of an exchange, or neither); returns why it cannot
    be, or None when it was."""
    session = decision.session
    assignment = await _current(session, swap.assignment_id)
    if assignment is None:
        return "the assignment was deleted"
    if assignment.person_id != swap.from_person_id:
        return "the assignment was given to someone else in the meantime"
    moves = [(assignment, swap.from_person_id, swap.to_person_id)]
    if swap.kind is SwapKind.exchange:
        counter = await _current(session, swap.counter_assignment_id)
        if counter is None:
            return "the assignment given in return was deleted"
        if counter.person_id != swap.to_person_id:
            return "the assignment given in return was given to someone else in the meantime"
        moves.append((counter, swap.to_person_id, swap.from_person_id))
    for moved, _, _ in moves:
        if _in_the_past(await session.get_one(Block, moved.block_id)):
            return "its duty is in the past now"
    schedule = await session.get_one(Schedule, assignment.schedule_id)
    try:
        states.edit_assignments(states.state_of(schedule))
    except states.IllegalTransition:
        return "the schedule is being generated again"
    violations = swap_violations(
        await load_problem(session, schedule),
        assignment.id,
        swap.to_person_id,
        counter_assignment_id=swap.counter_assignment_id,
    )
    if violations:
        return "; ".join(v.message for v in violations)
    try:
        async with session.begin_nested():
            for moved, holder, taker in moves:
                changed = await compare_and_set(
                    session,
                    update(Assignment)
                    .where(Assignment.id == moved.id, Assignment.person_id == holder)
                    .values(person_id=taker, updated_at=utcnow()),
                )
                if not changed:
                    raise _Changed
    except IntegrityError:
        return f"{swap.to_person_id} was given another assignment in that block"
    except _Changed:
        return "the assignment was changed in the meantime"
    return None


class _Changed(Exception):
    """An assignment was no longer its holder's: the savepoint is rolled back."""


class SwapReview(ReviewKind):
    name: ClassVar[str] = SWAP_KIND

    async def approve(self, decision: DecisionContext) -> Outcome:
        session = decision.session
        swap = await _swap_of(decision)
        if swap is None:
            raise await _invalidate(session, None, "a person in it was deleted")
        if swap.needs_acceptance and swap.accepted_at is None:
            # A Conflict rolls the request back: the thread stays pending for a later decision.
            raise Conflict("The counterpart has not accepted this swap yet")
        why = await _execute(decision, swap)
        if why is not None:
            raise await _invalidate(session, swap, why)
        swap.status, swap.decided_at = SwapStatus.approved, utcnow()
        await session.flush()
        await _mail(
            session,
            swap,
            "approved",
            "A coordinator approved it: the schedule is changed.",
            swap.from_person_id,
            swap.to_person_id,
        )
        return Outcome(message="Swap approved and executed: the assignment changed hands")

    async def reject(self, decision: DecisionContext) -> Outcome:
        session = decision.session
        swap = await _swap_of(decision)
        if swap is not None:  # rejecting a swap that is gone changes nothing
            swap.status, swap.decided_at = SwapStatus.rejected, utcnow()
            await session.flush()
            await _mail(
                session,
                swap,
                "rejected",
                "A coordinator rejected it: the schedule stays as it was.",
                swap.from_person_id,
                swap.to_person_id,
            )
        return Outcome(message="Swap rejected; the assignment stays as it was")

    # edit: the default refuses with 422; a swap is approved or rejected as asked.


swap_review = SwapReview()
