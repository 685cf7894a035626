"""Reviewers told that work waits: at most one e-mail per person and interval.

A thread that starts waiting (`review.service`) submits a `review.digest` job for its
organization. The job, in the current interval window (`TANDEM_REVIEW_DIGEST_SECONDS`),
e-mails the organization's digest recipients (`recipients`: those its admins chose, or every
active user who may decide) the threads waiting, each with a link
to its console page, through the outbox with the key `review-digest:<user>:<window>`: a second
thread in the same window (or the same job run again after a crash or restart) adds no
e-mail. Someone already told in this window gets the next window's digest instead: the job
submits one for the window's end (once per organization and window, by idempotency key).
"""

import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import transaction_scope
from tandem.jobs.dispatch import SessionDispatch
from tandem.jobs.registry import TaskContext, task
from tandem.jobs.registry import registry as task_registry
from tandem.jobs.service import JobControl, submit_job
from tandem.notifications.models import OutboxMessage
from tandem.notifications.recipients import digest_recipients
from tandem.notifications.service import enqueue_email
from tandem.review.models import ReviewThread
from tandem.review.states import ThreadStatus

DIGEST_TASK = "review.digest"
SHOWN_THREADS = 50
_JOBS = JobControl(registry=task_registry, dispatch=SessionDispatch())


class DigestPayload(BaseModel):
    organization_id: uuid.UUID


async def thread_waits(session: AsyncSession, thread: ReviewThread) -> None:
    """Called in the transaction in which `thread` started waiting for a decision."""
    await submit_job(
        session,
        _JOBS,
        task=DIGEST_TASK,
        payload={"organization_id": str(thread.organization_id)},
        organization_id=thread.organization_id,
    )


def _body(public_url: str, threads: list[ReviewThread]) -> str:
    lines = [f"{len(threads)} review thread(s) wait for a decision:", ""]
    for thread in threads[:SHOWN_THREADS]:
        lines.append(
            f"- {thread.kind} (revision {thread.revision}): "
            f"{public_url.rstrip('/')}/ui/threads/{thread.id}"
        )
    if len(threads) > SHOWN_THREADS:
        lines.append(f"- and {len(threads) - SHOWN_THREADS} more")
    return "\n".join(lines) + "\n"


@task(
    DIGEST_TASK,
    description="E-mails reviewers the threads waiting, at most once per person and interval",
    payload_model=DigestPayload,
    public=False,
)
async def send_digest(context: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    organization_id = uuid.UUID(payload["organization_id"])
    interval = context.settings.review_digest_seconds
    window = math.floor(time.time() / interval)
    async with context.sessionmaker() as session, transaction_scope(session):
        threads = list(
            (
                await session.scalars(
                    select(ReviewThread)
                    .where(
                        ReviewThread.organization_id == organization_id,
                        ReviewThread.status == ThreadStatus.pending_review,
                    )
                    .order_by(ReviewThread.updated_at, ReviewThread.id)
                )
            ).all()
        )
        if not threads:
            return {"sent": 0}
        sent, told_already = 0, False
        for person in await digest_recipients(session, organization_id):
            key = f"review-digest:{person.id}:{window}"
            if await session.scalar(
                select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)
            ):
                told_already = True
                continue
            await enqueue_email(
                session,
                to=person.email,
                subject=f"{len(threads)} review thread(s) wait for you",
                body=_body(context.settings.public_url, threads),
                organization_id=organization_id,
                dedupe_key=key,
            )
            sent += 1
        if told_already:
            await submit_job(
                session,
                _JOBS,
                task=DIGEST_TASK,
                payload=payload,
                organization_id=organization_id,
                run_at=datetime.fromtimestamp((window + 1) * interval, UTC),
                idempotency_key=f"review-digest:{organization_id}:{window + 1}",
            )
    return {"sent": sent, "next_window": told_already}
