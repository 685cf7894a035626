"""`ticket_reply`: a drafted reply waits for a person; approval records the reply sent."""

from tandem.review.kinds import DecisionContext, Outcome, ReviewKind


class TicketReply(ReviewKind):
    name = "ticket_reply"

    async def approve(self, decision: DecisionContext) -> Outcome:
        """The approved reply is recorded on the thread (its `final_content`), with the
        ticket it answers and the category it was filed under."""
        reply = decision.drafts[0] if decision.drafts else ""
        payload = decision.thread.payload
        record = {
            "ticket": payload.get("ticket"),
            "category": payload.get("category"),
            "sent_reply": reply,
        }
        return Outcome(message="Reply approved and recorded", final_content=[record])


ticket_reply = TicketReply()
