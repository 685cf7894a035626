"""What a worker holds while it runs a job (`Claim`), and a job claimed as it is submitted.

Apart from `tandem.jobs.lifecycle`, which records outcomes (and so emits webhook events), so
that submitting a job (`tandem.jobs.service`) can claim it without importing the webhooks
that submit jobs themselves.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tandem.db import new_id
from tandem.jobs import fairness
from tandem.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus


@dataclass(frozen=True)
class Claim:
    """A job this worker holds the lease of, with what the task needs to run."""

    job_id: uuid.UUID
    token: uuid.UUID
    task: str
    payload: dict[str, Any]
    attempt: int
    run: int
    max_attempts: int
    organization_id: fairness.Tenant = None
    # What the task gets in memory (`TaskContext.handed`): only for a job its submitter
    # inserted already claimed and started in its own process (`claimed_at_submit`).
    handed: Any = field(default=None, compare=False, repr=False)


def claimed_at_submit(
    job: Job, worker: str, lease: float, now: datetime
) -> tuple[Claim, JobAttempt]:
    """Makes the job about to be inserted (`job`, not yet written) one that `worker` has
    claimed, and returns its claim and its first attempt, for the caller to write once the job
    is written: what `claim_due` writes, in the submitter's own transaction, so no claim's
    transaction and no wake-up stand between submit and start. The caller holds a slot for it
    (`Executor.hold_slot`) and starts it once committed."""
    token = uuid.uuid4()
    job.status = JobStatus.running
    job.attempts = job.runs = 1
    job.lease_owner = worker
    job.lease_token = token
    job.lease_expires_at = now + timedelta(seconds=lease)
    job.started_at = job.updated_at = now
    attempt = JobAttempt(
        id=new_id(),
        job_id=job.id,
        number=1,
        worker=worker,
        outcome=AttemptOutcome.running,
        started_at=now,
        finished_at=None,
        error=None,
    )
    claim = Claim(job.id, token, job.task, job.payload, 1, 1, job.max_attempts, job.organization_id)
    return claim, attempt
