"""The job state machine: every transition by table, and a Hypothesis stateful test that no
sequence of claim/succeed/fail/lease-expire/retry/cancel reaches an illegal state."""

import contextlib

import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tandem.jobs import states
from tandem.jobs.models import JobStatus
from tandem.jobs.states import IllegalTransition, JobState

PENDING = JobState(JobStatus.pending, attempts=0, max_attempts=3)
RUNNING = JobState(JobStatus.running, attempts=1, max_attempts=3)
LAST_TRY = JobState(JobStatus.running, attempts=3, max_attempts=3)


@pytest.mark.parametrize(
    ("change", "before", "after"),
    [
        pytest.param(states.claim, PENDING, RUNNING, id="claim"),
        pytest.param(states.succeed, RUNNING, JobState(JobStatus.succeeded, 1, 3), id="succeed"),
        pytest.param(states.fail, RUNNING, JobState(JobStatus.pending, 1, 3), id="fail-retries"),
        pytest.param(states.fail, LAST_TRY, JobState(JobStatus.dead, 3, 3), id="fail-last-dead"),
        pytest.param(
            states.fail,
            JobState(JobStatus.running, 1, 3, cancel_requested=True),
            JobState(JobStatus.cancelled, 1, 3, cancel_requested=True),
            id="fail-while-cancelling",
        ),
        pytest.param(
            states.cancel, PENDING, JobState(JobStatus.cancelled, 0, 3), id="cancel-pending"
        ),
        pytest.param(
            states.cancel,
            RUNNING,
            JobState(JobStatus.running, 1, 3, cancel_requested=True),
            id="cancel-running-requests",
        ),
        pytest.param(
            states.hand_back, RUNNING, JobState(JobStatus.pending, 0, 3), id="hand-back-refunds"
        ),
        pytest.param(
            states.hand_back,
            JobState(JobStatus.running, 1, 3, cancel_requested=True),
            JobState(JobStatus.cancelled, 1, 3, cancel_requested=True),
            id="hand-back-while-cancelling-cancels",
        ),
        pytest.param(
            states.retry,
            JobState(JobStatus.dead, 3, 3),
            JobState(JobStatus.pending, 0, 3),
            id="retry-dead",
        ),
        pytest.param(
            states.retry,
            JobState(JobStatus.cancelled, 1, 3, cancel_requested=True),
            JobState(JobStatus.pending, 0, 3),
            id="retry-cancelled",
        ),
    ],
)
def test_transitions(change: object, before: JobState, after: JobState) -> None:
    assert change(before) == after  # type: ignore[operator]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        pytest.param(
            states.claim,
            JobStatus.running,
            "Cannot start a job that is running",
            id="claim-running",
        ),
        pytest.param(states.succeed, JobStatus.pending, "Cannot complete", id="succeed-pending"),
        pytest.param(
            states.cancel,
            JobStatus.succeeded,
            "Cannot cancel a job that is succeeded",
            id="cancel-finished",
        ),
        pytest.param(
            states.retry,
            JobStatus.pending,
            "Cannot retry a job that is pending",
            id="retry-pending",
        ),
        pytest.param(states.retry, JobStatus.succeeded, "Cannot retry", id="retry-succeeded"),
    ],
)
def test_illegal_transitions_say_why(change: object, status: JobStatus, message: str) -> None:
    with pytest.raises(IllegalTransition, match=message):
        change(JobState(status, 1, 3))  # type: ignore[operator]


class JobLifecycle(RuleBasedStateMachine):
    """Drives one job through any sequence of events; illegal events must be refused."""

    def __init__(self) -> None:
        super().__init__()
        self.state = JobState(JobStatus.pending, attempts=0, max_attempts=3)
        self.failures = 0

    def apply(self, change: object) -> None:
        # A refused event leaves the state unchanged, which the invariants then check.
        with contextlib.suppress(IllegalTransition):
            self.state = change(self.state)  # type: ignore[operator]

    @rule()
    def claim(self) -> None:
        self.apply(states.claim)

    @rule()
    def succeed(self) -> None:
        self.apply(states.succeed)

    @rule()
    def fail_or_lease_expires(self) -> None:
        self.apply(states.fail)

    @rule()
    def cancel(self) -> None:
        self.apply(states.cancel)

    @rule()
    def executor_stops_cancelled(self) -> None:
        if self.state.cancel_requested:
            self.apply(states.stop_cancelled)

    @rule()
    def hand_back(self) -> None:
        self.apply(states.hand_back)

    @rule()
    def retry(self) -> None:
        self.apply(states.retry)

    @invariant()
    def status_is_one_of_the_five(self) -> None:
        assert self.state.status in set(JobStatus)

    @invariant()
    def attempts_stay_within_the_budget(self) -> None:
        assert 0 <= self.state.attempts <= self.state.max_attempts

    @invariant()
    def running_means_an_attempt_is_counted(self) -> None:
        if self.state.status is JobStatus.running:
            assert self.state.attempts >= 1

    @invariant()
    def dead_only_when_the_budget_is_spent(self) -> None:
        if self.state.status is JobStatus.dead:
            assert self.state.attempts == self.state.max_attempts

    @invariant()
    def a_cancellation_request_never_lets_the_job_run_again(self) -> None:
        # Requested while running, it ends the job cancelled, unless the work succeeded first.
        if self.state.cancel_requested:
            assert self.state.status in {
                JobStatus.running,
                JobStatus.cancelled,
                JobStatus.succeeded,
            }

    @precondition(lambda self: self.state.status in states.FINISHED)
    @rule()
    def finished_jobs_only_move_by_retry(self) -> None:
        before = self.state
        for change in (states.claim, states.succeed, states.fail, states.hand_back):
            with pytest.raises(IllegalTransition):
                change(before)
        if before.status is JobStatus.succeeded:
            with pytest.raises(IllegalTransition):
                states.retry(before)


TestJobLifecycle = JobLifecycle.TestCase
TestJobLifecycle.settings = settings(max_examples=200, stateful_step_count=30)
