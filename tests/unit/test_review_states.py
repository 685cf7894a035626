"""The review thread state machine: the transition table, and no sequence of events that
reaches a state the table does not allow (Hypothesis)."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tandem.review import states
from tandem.review.states import (
    FINAL,
    Decision,
    IllegalTransition,
    ReviewState,
    ThreadStatus,
    approval_not_carried_out,
    decide,
    drafts_ready,
    generation_failed,
    generation_retried,
)

PENDING = ReviewState(ThreadStatus.pending_review, revision=1)


@pytest.mark.parametrize(
    ("decision", "status", "edit_count"),
    [
        pytest.param(Decision.approve, ThreadStatus.published, 0, id="approve-publishes"),
        pytest.param(Decision.reject, ThreadStatus.rejected, 0, id="reject-rejects"),
        pytest.param(Decision.edit, ThreadStatus.regenerating, 1, id="edit-regenerates"),
    ],
)
def test_a_decision_on_a_pending_thread(
    decision: Decision, status: ThreadStatus, edit_count: int
) -> None:
    after = decide(PENDING, decision)
    assert after == ReviewState(status, revision=1, edit_count=edit_count)


def test_an_approval_that_cannot_be_carried_out_fails_the_thread() -> None:
    after = approval_not_carried_out(PENDING)
    assert after == ReviewState(ThreadStatus.failed, revision=1, edit_count=0)


@pytest.mark.parametrize(
    "status",
    [pytest.param(s, id=s.value) for s in ThreadStatus if s is not ThreadStatus.pending_review],
)
@pytest.mark.parametrize("decision", [pytest.param(d, id=d.value) for d in Decision])
def test_only_a_pending_thread_takes_a_decision(status: ThreadStatus, decision: Decision) -> None:
    with pytest.raises(IllegalTransition, match=f"Thread is {status.value}"):
        decide(ReviewState(status, revision=1), decision)
    with pytest.raises(IllegalTransition, match=f"Thread is {status.value}"):
        approval_not_carried_out(ReviewState(status, revision=1))


@pytest.mark.parametrize(
    ("before", "revision"),
    [
        pytest.param(ThreadStatus.generating, 0, id="first-drafts"),
        pytest.param(ThreadStatus.regenerating, 3, id="revised-drafts"),
    ],
)
def test_drafts_ready_make_the_next_revision_pending(before: ThreadStatus, revision: int) -> None:
    after = drafts_ready(ReviewState(before, revision=revision, edit_count=2))
    assert after == ReviewState(ThreadStatus.pending_review, revision=revision + 1, edit_count=2)
    assert generation_failed(ReviewState(before, revision=revision)).status is ThreadStatus.failed


@pytest.mark.parametrize(
    "status",
    [pytest.param(s, id=s.value) for s in ThreadStatus if s not in states.GENERATING],
)
def test_only_a_generating_thread_gets_drafts_or_fails(status: ThreadStatus) -> None:
    with pytest.raises(IllegalTransition):
        drafts_ready(ReviewState(status, revision=1))
    with pytest.raises(IllegalTransition):
        generation_failed(ReviewState(status, revision=1))


@pytest.mark.parametrize(
    ("revision", "status"),
    [
        pytest.param(0, ThreadStatus.generating, id="first-drafts"),
        pytest.param(2, ThreadStatus.regenerating, id="revised-drafts"),
    ],
)
def test_a_failed_generation_retried_is_waited_for_again(
    revision: int, status: ThreadStatus
) -> None:
    failed = generation_failed(ReviewState(ThreadStatus.generating, revision, edit_count=2))
    assert generation_retried(replace(failed, revision=revision)) == ReviewState(
        status, revision, edit_count=2
    )


@pytest.mark.parametrize(
    "status", [pytest.param(s, id=s.value) for s in ThreadStatus if s is not ThreadStatus.failed]
)
def test_only_a_failed_thread_is_retried(status: ThreadStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"Thread is {status.value}, not failed"):
        generation_retried(ReviewState(status, revision=1))


NOT_CARRIED_OUT = "approve_not_carried_out"
EVENTS = st.sampled_from(
    ["drafts_ready", "generation_failed", NOT_CARRIED_OUT, *[d.value for d in Decision]]
)


def apply(state: ReviewState, event: str) -> ReviewState:
    if event == "drafts_ready":
        return drafts_ready(state)
    if event == "generation_failed":
        return generation_failed(state)
    if event == NOT_CARRIED_OUT:
        return approval_not_carried_out(state)
    return decide(state, Decision(event))


@given(st.lists(EVENTS, max_size=40))
def test_a_final_state_never_changes(events: list[str]) -> None:
    state = ReviewState(ThreadStatus.generating, revision=0)
    for event in events:
        was_final = state.status in FINAL
        try:
            state = apply(state, event)
        except IllegalTransition:
            continue
        assert not was_final, f"{event} moved a thread out of a final state"


class ReviewThreadMachine(RuleBasedStateMachine):
    """Any order of events, legal or not: illegal ones are refused and change nothing;
    legal ones keep the thread's invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ReviewState(ThreadStatus.generating, revision=0)
        self.decisions: list[tuple[int, Decision]] = []
        self.edits = 0
        self.generations = 0

    @rule(event=EVENTS)
    def happen(self, event: str) -> None:
        before = self.state
        try:
            after = apply(before, event)
        except IllegalTransition:
            assert self.state == before
            return
        if event == NOT_CARRIED_OUT:
            self.decisions.append((before.revision, Decision.approve))
        elif event in {d.value for d in Decision}:
            self.decisions.append((before.revision, Decision(event)))
            self.edits += event == Decision.edit
        if event == "drafts_ready":
            self.generations += 1
        self.state = after

    @invariant()
    def one_decision_per_revision(self) -> None:
        revisions = [revision for revision, _ in self.decisions]
        assert len(revisions) == len(set(revisions))

    @invariant()
    def counts_agree(self) -> None:
        assert self.state.edit_count == self.edits
        assert self.state.revision == self.generations
        # Every revision but the first was asked for by an edit.
        assert self.state.revision <= self.edits + 1

    @invariant()
    def a_pending_thread_has_drafts(self) -> None:
        if self.state.status is ThreadStatus.pending_review:
            assert self.state.revision >= 1

    @invariant()
    def published_or_rejected_only_by_a_decision(self) -> None:
        if self.state.status is ThreadStatus.published:
            assert self.decisions[-1][1] is Decision.approve
        if self.state.status is ThreadStatus.rejected:
            assert self.decisions[-1][1] is Decision.reject


TestReviewThreadMachine = ReviewThreadMachine.TestCase
