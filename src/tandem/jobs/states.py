"""The job state machine, as pure functions: the service asks these what a change leads to,
then writes it with an update guarded on the state it read.

    pending --claim--> running --succeed--> succeeded
                          |--fail / lease expired--> pending (budget left) | dead
                          |--cancel--> running + cancel requested --stop--> cancelled
                          |--hand back (shutdown)--> pending (attempt not counted)
    pending --cancel--> cancelled
    dead | cancelled --retry--> pending (fresh budget)
"""

from dataclasses import dataclass, replace

from tandem.jobs.models import JobStatus

FINISHED = frozenset({JobStatus.succeeded, JobStatus.dead, JobStatus.cancelled})
# Finished without a result: what the job worked for will not get one (`on_give_up`).
GAVE_UP = frozenset({JobStatus.dead, JobStatus.cancelled})


class IllegalTransition(Exception):
    pass


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    attempts: int
    max_attempts: int
    cancel_requested: bool = False


def _require(state: JobState, *allowed: JobStatus, action: str) -> None:
    if state.status not in allowed:
        raise IllegalTransition(f"Cannot {action} a job that is {state.status.value}")


def claim(state: JobState) -> JobState:
    _require(state, JobStatus.pending, action="start")
    return replace(state, status=JobStatus.running, attempts=state.attempts + 1)


def succeed(state: JobState) -> JobState:
    _require(state, JobStatus.running, action="complete")
    return replace(state, status=JobStatus.succeeded)


def fail(state: JobState) -> JobState:
    """A failed attempt, including a lease that expired because the worker died."""
    _require(state, JobStatus.running, action="fail")
    if state.cancel_requested:
        return replace(state, status=JobStatus.cancelled)
    exhausted = state.attempts >= state.max_attempts
    return replace(state, status=JobStatus.dead if exhausted else JobStatus.pending)


def cancel(state: JobState) -> JobState:
    if state.status is JobStatus.pending:
        return replace(state, status=JobStatus.cancelled)
    if state.status is JobStatus.running:
        return replace(state, cancel_requested=True)
    raise IllegalTransition(f"Cannot cancel a job that is {state.status.value}")


def stop_cancelled(state: JobState) -> JobState:
    """The executor noticed the cancellation request and stopped the task."""
    _require(state, JobStatus.running, action="stop")
    return replace(state, status=JobStatus.cancelled)


def hand_back(state: JobState) -> JobState:
    """Graceful shutdown: the attempt did not fail, so it does not use up the budget.
    A job someone asked to cancel is not handed back to run again: it is cancelled."""
    _require(state, JobStatus.running, action="hand back")
    if state.cancel_requested:
        return replace(state, status=JobStatus.cancelled)
    return replace(state, status=JobStatus.pending, attempts=state.attempts - 1)


def retry(state: JobState) -> JobState:
    _require(state, JobStatus.dead, JobStatus.cancelled, action="retry")
    return replace(state, status=JobStatus.pending, attempts=0, cancel_requested=False)
