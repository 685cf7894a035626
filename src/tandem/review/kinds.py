"""What each kind of review thread does when a reviewer decides.

How to add a kind (the scheduling module's swaps are one):

1. Subclass `ReviewKind` and override what the kind does on `approve`, `reject` and `edit`.
   Each runs inside the deciding request's transaction, after the guarded update has claimed
   the decision: raise a domain error (`Conflict`, `Invalid`, ...) and the whole decision,
   state change included, is rolled back. A kind that cannot be revised keeps the default
   `edit`, which refuses with a 422.
2. Make one instance at module level (`swap_review = SwapReview()`) and list it in
   `tandem.plugins.BUILT_IN` (group `tandem.review_kinds`).
3. Open threads with `tandem.review.service.open_thread(session, principal, kind="swap",
   drafts=[...], payload={...}, quota=settings.quota_waiting_threads)`: the thread starts
   in `pending_review`, its drafts as revision 1, and appears in `GET /api/hitl/pending`
   with that kind (409 when the organization already has `quota` threads waiting).
"""

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from tandem.errors import Conflict, Invalid
from tandem.identity.principal import Principal
from tandem.jobs.service import JobControl
from tandem.plugins import REVIEW_KINDS, Registry
from tandem.review.models import ReviewThread

PREVIEW_CHARS = 200


class ApprovalNotCarriedOut(Conflict):
    """Raised by `ReviewKind.approve` when what was approved cannot be done any more."""

    keeps_changes = True

    def __init__(self, reason: str) -> None:
        super().__init__(f"Approved, but it cannot be carried out: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class DecisionContext:
    """One decision being applied. `thread` already carries the new status (and, after an
    edit, the new edit count); `drafts` are those of the revision decided on."""

    session: AsyncSession
    jobs: JobControl
    principal: Principal
    thread: ReviewThread
    drafts: list[Any]
    feedback: str | None


@dataclass(frozen=True)
class Outcome:
    """What a kind reports back: the message for the reviewer (None: the default one) and,
    on approval, what was published or executed (None: the drafts)."""

    message: str | None = None
    final_content: list[Any] | None = None
    job_id: uuid.UUID | None = None  # an edit's regeneration job


class ReviewKind:
    name: ClassVar[str]

    async def approve(self, decision: DecisionContext) -> Outcome:
        return Outcome()

    async def reject(self, decision: DecisionContext) -> Outcome:
        return Outcome()

    async def edit(self, decision: DecisionContext) -> Outcome:
        raise Invalid(f"edit is not allowed for {self.name} threads", loc=("body", "decision"))

    def preview(self, drafts: list[Any]) -> str:
        """A line for the review queue: the start of the first draft."""
        if not drafts:
            return ""
        first = drafts[0] if isinstance(drafts[0], str) else str(drafts[0])
        return first if len(first) <= PREVIEW_CHARS else first[: PREVIEW_CHARS - 1] + "…"


class KindRegistry(Registry[ReviewKind]):
    what = "Review kind"


kinds = KindRegistry(group=REVIEW_KINDS)
register_kind = kinds.register
get_kind = kinds.get
kind_names = kinds.names
