"""Every model, imported in one place so that `Base.metadata` is complete (Alembic, tests)."""

from tandem.db import Base
from tandem.identity.models import Organization

__all__ = ["Base", "Organization"]
