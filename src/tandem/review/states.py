"""The review thread state machine, as pure functions: the service asks these what a change
leads to, then writes it with an update guarded on the state (and revision) it read.

    generating --drafts ready--> pending_review --approve--> published
         |                          |   ^      \\--reject--> rejected
         |                          |   |      \\--approve, not carried out--> failed
         |                        edit  drafts ready
         |                          v   |
         |                       regenerating
         \\----- generation failed -----\\--> failed --its job retried--> (re)generating

published and rejected are final; so is failed, except that a thread whose generation job
died comes back when that job is retried from the dead-letter queue. An approval the
thread's kind cannot carry out (a swap that no longer keeps the rules) ends the thread
`failed` for good: asking again cannot help.
Each review round is one revision: a decision names the revision it was made on, so a round
takes exactly one decision.
"""

from dataclasses import dataclass, replace
from enum import StrEnum


class ThreadStatus(StrEnum):
    generating = "generating"
    pending_review = "pending_review"
    regenerating = "regenerating"
    published = "published"
    rejected = "rejected"
    failed = "failed"


class Decision(StrEnum):
    approve = "approve"
    reject = "reject"
    edit = "edit"


FINAL = frozenset({ThreadStatus.published, ThreadStatus.rejected, ThreadStatus.failed})
GENERATING = frozenset({ThreadStatus.generating, ThreadStatus.regenerating})

_AFTER_DECISION = {
    Decision.approve: ThreadStatus.published,
    Decision.reject: ThreadStatus.rejected,
    Decision.edit: ThreadStatus.regenerating,
}


class IllegalTransition(Exception):
    pass


@dataclass(frozen=True)
class ReviewState:
    status: ThreadStatus
    revision: int  # 0 until the first drafts exist
    edit_count: int = 0


def decide(state: ReviewState, decision: Decision) -> ReviewState:
    """A reviewer's decision on the current revision."""
    if state.status is not ThreadStatus.pending_review:
        raise IllegalTransition(
            f"Thread is {state.status.value}, not pending_review: it cannot take a decision"
        )
    edits = state.edit_count + (1 if decision is Decision.edit else 0)
    return replace(state, status=_AFTER_DECISION[decision], edit_count=edits)


def drafts_ready(state: ReviewState) -> ReviewState:
    """A generation finished: its drafts are the next revision, waiting for review."""
    if state.status not in GENERATING:
        raise IllegalTransition(f"Thread is {state.status.value}: no drafts are being written")
    return replace(state, status=ThreadStatus.pending_review, revision=state.revision + 1)


def approval_not_carried_out(state: ReviewState) -> ReviewState:
    """A reviewer approved the current revision, but its kind could not carry the approval
    out: the round's one decision is made, and the thread fails instead of publishing."""
    decide(state, Decision.approve)  # refuses exactly what an approval refuses
    return replace(state, status=ThreadStatus.failed)


def generation_failed(state: ReviewState) -> ReviewState:
    if state.status not in GENERATING:
        raise IllegalTransition(f"Thread is {state.status.value}: no drafts are being written")
    return replace(state, status=ThreadStatus.failed)


def generation_retried(state: ReviewState) -> ReviewState:
    """The job whose failure failed the thread runs again: the thread waits for its drafts
    (the first ones, or those an edit asked for)."""
    if state.status is not ThreadStatus.failed:
        raise IllegalTransition(f"Thread is {state.status.value}, not failed")
    status = ThreadStatus.generating if state.revision == 0 else ThreadStatus.regenerating
    return replace(state, status=status)
