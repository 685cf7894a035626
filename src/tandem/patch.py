"""PATCH bodies, one rule everywhere: only the fields sent change; unknown fields are 422;
null clears a field the row may be without and is 422 for one it cannot (`not_null`)."""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tandem.errors import Invalid


class Patch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    not_null: ClassVar[frozenset[str]] = frozenset()

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, with their values (None: clear it)."""
        sent = self.model_dump(exclude_unset=True)
        for field in sorted(self.not_null & sent.keys()):
            if sent[field] is None:
                raise Invalid(f"{field} cannot be null", loc=("body", field))
        return sent
