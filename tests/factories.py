"""One factory per model, producing the minimum valid object; tests override what they test.

Factories persist through the test's session (bound by the `db_session` fixture) with
`flush`, so the rows live inside the test's rolled-back transaction:

    org = await OrganizationFactory.create_async(name="Acme")
"""

from typing import TypeVar

from polyfactory import Use
from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import utcnow
from tandem.models import Organization

T = TypeVar("T")


class BaseFactory(SQLAlchemyFactory[T]):
    __is_base_factory__ = True
    __set_relationships__ = False
    __set_primary_key__ = False
    __check_model__ = False

    created_at = Use(utcnow)
    updated_at = Use(utcnow)


def bind(session: AsyncSession | None) -> None:
    """Point every factory at the test's session (None unbinds)."""
    pending: list[type[BaseFactory[object]]] = [BaseFactory]
    while pending:
        factory = pending.pop()
        factory.__async_session__ = session
        pending.extend(factory.__subclasses__())


class OrganizationFactory(BaseFactory[Organization]):
    __model__ = Organization

    name = Use(lambda: f"Org {BaseFactory.__faker__.company()}")
