"""Swaps: one person hands an assignment to another, through the review queue.

`POST /swaps` checks the swapped schedule with the rule engine and, if it keeps every rule,
opens a review thread of kind `swap`. A reviewer's approval (`POST /api/hitl/resume`) comes
to `SwapReview.approve`, which checks again against the schedule as it is now and executes
the swap with an update guarded on the assignment still being the one the swap was asked for.
"""

import uuid
from dataclasses import replace
from typing import Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import compare_and_set, utcnow
from tandem.errors import Conflict, Invalid
from tandem.identity.principal import Principal
from tandem.review.kinds import (
    ApprovalNotCarriedOut,
    DecisionContext,
    Outcome,
    ReviewKind,
)
from tandem.review.service import open_thread
from tandem.scheduling import domain, rules, service, states
from tandem.scheduling.models import (
    Assignment,
    Block,
    Person,
    Rotation,
    Schedule,
    Swap,
    SwapStatus,
)
from tandem.scheduling.problem import load_problem
from tandem.scheduling.schemas import SwapIn, ViolationOut
from tandem.tenancy import owned

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
    problem: domain.ScheduleProblem, assignment_id: uuid.UUID, to_person_id: uuid.UUID
) -> tuple[domain.Violation, ...]:
    """The violations the swap adds, checked in every 28-day window holding the block's date.

    A violation already there before the swap is not the swap's doing. Those about the person
    giving the assignment away are left out too: losing a duty cannot make their hours or
    days off worse, only change the figures in a message that was already there.
    """
    (assignment,) = [a for a in problem.assignments if a.id == assignment_id]
    day = problem.blocks[assignment.block_id].date
    around = (day, day)
    before = set(rules.validate(problem, around=around).violations)
    swapped = replace(
        problem,
        assignments=tuple(
            replace(a, person_id=to_person_id) if a.id == assignment_id else a
            for a in problem.assignments
        ),
    )
    after = rules.validate(swapped, around=around).violations
    return tuple(v for v in after if v not in before and v.person_id != assignment.person_id)


async def _describe(session: AsyncSession, assignment: Assignment, to_person: Person) -> str:
    from_person = await session.get_one(Person, assignment.person_id)
    block = await session.get_one(Block, assignment.block_id)
    rotation = await session.get_one(Rotation, assignment.rotation_id)
    return (
        f"Swap: {from_person.name} hands {rotation.name} ({assignment.role.value}) on "
        f"{block.date.isoformat()} {block.time_of_day.value} to {to_person.name}"
    )


async def request_swap(
    session: AsyncSession, principal: Principal, body: SwapIn, *, quota: int
) -> Swap:
    """A pending swap and its review thread; `quota`: TANDEM_QUOTA_WAITING_THREADS."""
    assignment = await service.get_assignment(session, principal, body.assignment_id)
    to_person = await service.get_person(session, principal, body.to_person_id)
    schedule = await session.get_one(Schedule, assignment.schedule_id)
    try:
        states.edit_assignments(states.state_of(schedule))
    except states.IllegalTransition as exc:
        raise Conflict(str(exc)) from exc
    if to_person.id == assignment.person_id:
        raise Invalid("The assignment already belongs to this person", loc=("body", "to_person_id"))
    if service.role_for(to_person) is not assignment.role:
        raise Invalid(
            f"A {to_person.type.value} cannot take a {assignment.role.value} assignment",
            loc=("body", "to_person_id"),
        )
    problem = await load_problem(session, schedule)
    violations = swap_violations(problem, assignment.id, to_person.id)
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
    )
    session.add(swap)
    await session.flush()
    summary = await _describe(session, assignment, to_person)
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
    return swap


async def get_swap(session: AsyncSession, principal: Principal, swap_id: uuid.UUID) -> Swap:
    return await owned(session, principal, Swap, swap_id, "Swap")


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
    return swap, swap_violations(problem, assignment.id, swap.to_person_id)


async def _swap_of(decision: DecisionContext) -> Swap | None:
    """The thread's swap; None when it is gone (a person in it was deleted)."""
    swap_id = uuid.UUID(decision.thread.payload["swap_id"])
    swap = await decision.session.scalar(select(Swap).where(Swap.id == swap_id))
    if swap is not None and swap.status is not SwapStatus.pending:
        raise Conflict(f"This swap is {swap.status.value}, no longer pending")
    return swap


async def _invalidate(swap: Swap | None, why: str) -> ApprovalNotCarriedOut:
    """Records that the swap cannot be executed any more; raising the returned error ends
    its thread as failed (see `tandem.review.kinds.ApprovalNotCarriedOut`)."""
    if swap is not None:
        swap.status, swap.decided_at = SwapStatus.invalidated, utcnow()
    return ApprovalNotCarriedOut(f"the swap no longer holds: {why}")


async def _execute(decision: DecisionContext, swap: Swap) -> str | None:
    """Executes the swap; returns why it cannot be, or None when it was."""
    session = decision.session
    assignment = (
        None if swap.assignment_id is None else await session.get(Assignment, swap.assignment_id)
    )
    if assignment is None:
        return "the assignment was deleted"
    await session.refresh(assignment)  # the row as it is now, not as this session saw it
    if assignment.person_id != swap.from_person_id:
        return "the assignment was given to someone else in the meantime"
    schedule = await session.get_one(Schedule, assignment.schedule_id)
    try:
        states.edit_assignments(states.state_of(schedule))
    except states.IllegalTransition:
        return "the schedule is being generated again"
    violations = swap_violations(
        await load_problem(session, schedule), assignment.id, swap.to_person_id
    )
    if violations:
        return "; ".join(v.message for v in violations)
    try:
        async with session.begin_nested():
            moved = await compare_and_set(
                session,
                update(Assignment)
                .where(
                    Assignment.id == assignment.id,
                    Assignment.person_id == swap.from_person_id,
                )
                .values(person_id=swap.to_person_id, updated_at=utcnow()),
            )
    except IntegrityError:
        return f"{swap.to_person_id} was given another assignment in that block"
    if not moved:
        return "the assignment was changed in the meantime"
    return None


class SwapReview(ReviewKind):
    name: ClassVar[str] = SWAP_KIND

    async def approve(self, decision: DecisionContext) -> Outcome:
        swap = await _swap_of(decision)
        if swap is None:
            raise await _invalidate(None, "a person in it was deleted")
        why = await _execute(decision, swap)
        if why is not None:
            raise await _invalidate(swap, why)
        swap.status, swap.decided_at = SwapStatus.approved, utcnow()
        await decision.session.flush()
        return Outcome(message="Swap approved and executed: the assignment changed hands")

    async def reject(self, decision: DecisionContext) -> Outcome:
        swap = await _swap_of(decision)
        if swap is not None:  # rejecting a swap that is gone changes nothing
            swap.status, swap.decided_at = SwapStatus.rejected, utcnow()
            await decision.session.flush()
        return Outcome(message="Swap rejected; the assignment stays as it was")

    # edit: the default refuses with 422; a swap is approved or rejected as asked.


swap_review = SwapReview()
