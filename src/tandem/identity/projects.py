"""Projects: named containers for work, unique by slug inside an organization."""

import re
import unicodedata
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit import service as audit
from tandem.audit.service import AuditAction
from tandem.db import unique_or_conflict
from tandem.errors import Conflict, Invalid
from tandem.identity.models import Project
from tandem.identity.principal import Principal
from tandem.identity.schemas import ProjectIn, ProjectUpdateIn
from tandem.pagination import PageParams, paginate
from tandem.tenancy import owned


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:200]


def _slug_for(name: str) -> str:
    slug = slugify(name)
    if not slug:
        raise Invalid("Project name needs at least one letter or digit", loc=("body", "name"))
    return slug


async def get_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID
) -> Project:
    return await owned(session, principal, Project, project_id, "Project")


def _slug_taken(slug: str) -> Conflict:
    return Conflict(f"A project with the slug '{slug}' already exists in this organization")


async def create_project(session: AsyncSession, principal: Principal, data: ProjectIn) -> Project:
    project = Project(
        organization_id=principal.organization_id,
        owner_id=principal.user_id,
        name=data.name,
        slug=_slug_for(data.name),
        description=data.description,
    )
    async with unique_or_conflict(session, _slug_taken(project.slug)):
        session.add(project)
    return project


async def list_projects(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[Sequence[Project], int]:
    query = (
        select(Project)
        .where(Project.organization_id == principal.organization_id)
        .order_by(Project.created_at, Project.id)
    )
    return await paginate(session, query, params)


async def update_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, body: ProjectUpdateIn
) -> Project:
    project = await get_project(session, principal, project_id)
    changes = body.changes()
    if "name" in changes:
        changes["slug"] = _slug_for(changes["name"])
    # The changes are made inside the savepoint: begin_nested() flushes what is pending.
    async with unique_or_conflict(session, _slug_taken(changes.get("slug", project.slug))):
        for field, value in changes.items():
            setattr(project, field, value)
    return project


async def delete_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID
) -> None:
    project = await get_project(session, principal, project_id)
    await session.delete(project)
    await session.flush()
    await audit.record(
        session,
        AuditAction.project_deleted,
        organization_id=principal.organization_id,
        actor=principal,
        target=("project", project_id),
        details={"name": project.name},
    )
