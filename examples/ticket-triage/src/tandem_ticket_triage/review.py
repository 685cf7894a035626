"""`ticket_reply`: a drafted reply waits for a person; approval records the reply sent."""

from tandem.review.kinds import DecisionContext, Outcome, ReviewKind


class TicketReply(ReviewKind):
    name = "ticket_reply"

    async def approve(self, decision: DecisionContext) -> Outcome:
        reply = decision.drafts[0] if decision.drafts else ""
        return Outcome(message="Reply recorded", final_content=[{"sent_reply": reply}])


ticket_reply = TicketReply()
