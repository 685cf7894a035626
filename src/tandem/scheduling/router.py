"""HTTP for scheduling (API.md, "Scheduling"): parse, authorise, call one service function."""

import uuid
from datetime import date
from typing import Annotated

from fastapi import Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.pagination import Page, PageParamsDep
from tandem.routing import Router
from tandem.scheduling import calls, exports, service, swaps
from tandem.scheduling.domain import PersonType
from tandem.scheduling.schemas import (
    AbsenceCreated,
    AbsenceIn,
    AbsenceOut,
    AssignmentCreated,
    AssignmentIn,
    AssignmentOut,
    BlockOut,
    BlocksGenerated,
    BlocksGenerateIn,
    CallCreated,
    CallIn,
    CallOut,
    GenerateAccepted,
    GenerateIn,
    MoonlightingIn,
    MoonlightingOut,
    PersonIn,
    PersonOut,
    PersonPatch,
    RotationIn,
    RotationOut,
    ScheduleIn,
    ScheduleOut,
    SwapIn,
    SwapOut,
    ValidationOut,
    ViolationOut,
)
from tandem.settings import Settings

router = Router(
    route_class=ApiRoute, prefix="/api/v1", tags=["scheduling"], responses=error_responses(401, 403)
)

Reader = Annotated[Principal, Depends(require_scopes(Scope.schedule_read))]
Writer = Annotated[Principal, Depends(require_scopes(Scope.schedule_write))]
Admin = Annotated[Principal, Depends(require_scopes(Scope.schedule_admin))]
NO_CONTENT = status.HTTP_204_NO_CONTENT


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# --- people -------------------------------------------------------------------------------------


@router.post("/people", status_code=status.HTTP_201_CREATED, responses=error_responses(409))
async def create_person(
    body: PersonIn, principal: Writer, session: SessionDep, request: Request
) -> PersonOut:
    quota = _settings(request).quota_people
    return PersonOut.model_validate(
        await service.create_person(session, principal, body, quota=quota)
    )


@router.get("/people")
async def list_people(
    principal: Reader,
    session: SessionDep,
    page: PageParamsDep,
    type_: Annotated[PersonType | None, Query(alias="type")] = None,
) -> Page[PersonOut]:
    rows, count = await service.list_people(session, principal, page, type_=type_)
    return Page(items=[PersonOut.model_validate(row) for row in rows], count=count)


@router.get("/people/{person_id}", responses=error_responses(404))
async def get_person(person_id: uuid.UUID, principal: Reader, session: SessionDep) -> PersonOut:
    return PersonOut.model_validate(await service.get_person(session, principal, person_id))


@router.patch("/people/{person_id}", responses=error_responses(404, 409))
async def update_person(
    person_id: uuid.UUID, body: PersonPatch, principal: Writer, session: SessionDep
) -> PersonOut:
    person = await service.update_person(session, principal, person_id, body)
    return PersonOut.model_validate(person)


@router.delete("/people/{person_id}", status_code=NO_CONTENT, responses=error_responses(404))
async def delete_person(person_id: uuid.UUID, principal: Writer, session: SessionDep) -> None:
    await service.delete_person(session, principal, person_id)


@router.post(
    "/people/{person_id}/absences",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404),
)
async def add_absence(
    person_id: uuid.UUID, body: AbsenceIn, principal: Writer, session: SessionDep
) -> AbsenceCreated:
    absence, conflicts, resolution = await service.add_absence(session, principal, person_id, body)
    return AbsenceCreated(
        **AbsenceOut.model_validate(absence).model_dump(),
        conflicts=conflicts,
        resolution=resolution,
    )


@router.get("/people/{person_id}/absences", responses=error_responses(404))
async def list_absences(
    person_id: uuid.UUID, principal: Reader, session: SessionDep, page: PageParamsDep
) -> Page[AbsenceOut]:
    rows, count = await service.list_absences(session, principal, person_id, page)
    return Page(items=[AbsenceOut.model_validate(row) for row in rows], count=count)


@router.post(
    "/people/{person_id}/moonlighting",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409),
)
async def add_moonlighting(
    person_id: uuid.UUID, body: MoonlightingIn, principal: Writer, session: SessionDep
) -> MoonlightingOut:
    """Hours worked outside the schedule in one week: they count toward the 80 hours."""
    entry = await calls.add_moonlighting(session, principal, person_id, body)
    return MoonlightingOut.model_validate(entry)


@router.get("/people/{person_id}/moonlighting", responses=error_responses(404))
async def list_moonlighting(
    person_id: uuid.UUID, principal: Reader, session: SessionDep, page: PageParamsDep
) -> Page[MoonlightingOut]:
    rows, count = await calls.list_moonlighting(session, principal, person_id, page)
    return Page(items=[MoonlightingOut.model_validate(row) for row in rows], count=count)


@router.delete(
    "/people/{person_id}/moonlighting/{entry_id}",
    status_code=NO_CONTENT,
    responses=error_responses(404),
)
async def delete_moonlighting(
    person_id: uuid.UUID, entry_id: uuid.UUID, principal: Writer, session: SessionDep
) -> None:
    await calls.delete_moonlighting(session, principal, person_id, entry_id)


# --- blocks and rotations -----------------------------------------------------------------------


@router.post("/blocks/generate", status_code=status.HTTP_201_CREATED)
async def generate_blocks(
    body: BlocksGenerateIn, principal: Writer, session: SessionDep
) -> BlocksGenerated:
    created = await service.generate_blocks(session, principal, body.start_date, body.end_date)
    return BlocksGenerated(created=created)


@router.get("/blocks")
async def list_blocks(
    principal: Reader,
    session: SessionDep,
    page: PageParamsDep,
    start_date: date | None = None,
    end_date: date | None = None,
) -> Page[BlockOut]:
    rows, count = await service.list_blocks(
        session, principal, page, start=start_date, end=end_date
    )
    return Page(items=[BlockOut.model_validate(row) for row in rows], count=count)


@router.get("/blocks/current", responses=error_responses(404))
async def current_block(principal: Reader, session: SessionDep) -> BlockOut:
    """The block happening now (UTC): the AM block before noon, the PM block from noon."""
    return BlockOut.model_validate(await service.current_block(session, principal))


@router.post("/rotations", status_code=status.HTTP_201_CREATED)
async def create_rotation(body: RotationIn, principal: Writer, session: SessionDep) -> RotationOut:
    return RotationOut.model_validate(await service.create_rotation(session, principal, body))


@router.get("/rotations")
async def list_rotations(
    principal: Reader, session: SessionDep, page: PageParamsDep
) -> Page[RotationOut]:
    rows, count = await service.list_rotations(session, principal, page)
    return Page(items=[RotationOut.model_validate(row) for row in rows], count=count)


# --- schedules ----------------------------------------------------------------------------------


@router.post("/schedules", status_code=status.HTTP_201_CREATED, responses=error_responses(409))
async def create_schedule(
    body: ScheduleIn, principal: Writer, session: SessionDep, request: Request
) -> ScheduleOut:
    quota = _settings(request).quota_schedules
    schedule = await service.create_schedule(session, principal, body, quota=quota)
    return ScheduleOut.model_validate(schedule)


@router.get("/schedules")
async def list_schedules(
    principal: Reader, session: SessionDep, page: PageParamsDep
) -> Page[ScheduleOut]:
    rows, count = await service.list_schedules(session, principal, page)
    return Page(items=[ScheduleOut.model_validate(row) for row in rows], count=count)


@router.get("/schedules/{schedule_id}", responses=error_responses(404))
async def get_schedule(
    schedule_id: uuid.UUID, principal: Reader, session: SessionDep
) -> ScheduleOut:
    return ScheduleOut.model_validate(await service.get_schedule(session, principal, schedule_id))


@router.delete("/schedules/{schedule_id}", status_code=NO_CONTENT, responses=error_responses(404))
async def delete_schedule(
    schedule_id: uuid.UUID, principal: Admin, session: SessionDep, jobs: JobControlDep
) -> None:
    await service.delete_schedule(session, jobs, principal, schedule_id)


@router.post(
    "/schedules/{schedule_id}/generate",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409),
)
async def generate_schedule(
    schedule_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    jobs: JobControlDep,
    request: Request,
    body: GenerateIn | None = None,
) -> GenerateAccepted:
    settings = _settings(request)
    timeout = (body.timeout_seconds if body else None) or settings.schedule_solver_timeout_seconds
    job_id = await service.request_generation(
        session, jobs, principal, schedule_id, timeout_seconds=timeout
    )
    return GenerateAccepted(job_id=job_id)


@router.post("/schedules/{schedule_id}/publish", responses=error_responses(404, 409))
async def publish_schedule(
    schedule_id: uuid.UUID, principal: Writer, session: SessionDep
) -> ScheduleOut:
    """A generated schedule becomes `published`: it cannot be generated again."""
    schedule = await service.publish_schedule(session, principal, schedule_id)
    return ScheduleOut.model_validate(schedule)


@router.get("/schedules/{schedule_id}/validation", responses=error_responses(404))
async def validate_schedule(
    schedule_id: uuid.UUID, principal: Reader, session: SessionDep
) -> ValidationOut:
    report = await service.validate_schedule(session, principal, schedule_id)
    return ValidationOut(
        valid=report.valid,
        total_violations=report.total_violations,
        violations=[ViolationOut.of(v) for v in report.violations],
        coverage_rate=report.coverage_rate,
    )


def _download(content: str | bytes, media_type: str, name: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def csv_download(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID
) -> Response:
    """The CSV export as a file to save (also the console's download)."""
    schedule, rows = await exports.duties(session, principal, schedule_id)
    name = exports.filename(schedule, "csv")
    return _download(exports.to_csv(rows), "text/csv; charset=utf-8", name)


async def ics_download(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    person_id: uuid.UUID | None,
) -> Response:
    """The iCalendar export as a file to save (also the console's download)."""
    schedule, rows = await exports.duties(session, principal, schedule_id, person_id=person_id)
    name = exports.filename(schedule, "ics")
    return _download(exports.to_ics(schedule, rows), "text/calendar; charset=utf-8", name)


@router.get(
    "/schedules/{schedule_id}/export.csv",
    responses={200: {"content": {"text/csv": {}}}, **error_responses(404)},
    response_class=Response,
)
async def export_csv(schedule_id: uuid.UUID, principal: Reader, session: SessionDep) -> Response:
    """Every assignment of the schedule, one row each, in time order."""
    return await csv_download(session, principal, schedule_id)


@router.get(
    "/schedules/{schedule_id}/export.ics",
    responses={200: {"content": {"text/calendar": {}}}, **error_responses(404)},
    response_class=Response,
)
async def export_ics(
    schedule_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    person_id: uuid.UUID | None = None,
) -> Response:
    """iCalendar, one event per duty period; `person_id` keeps one person's duties."""
    return await ics_download(session, principal, schedule_id, person_id)


@router.get("/schedules/{schedule_id}/assignments", responses=error_responses(404))
async def list_assignments(
    schedule_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    page: PageParamsDep,
    person_id: uuid.UUID | None = None,
) -> Page[AssignmentOut]:
    rows, count = await service.list_assignments(
        session, principal, schedule_id, page, person_id=person_id
    )
    return Page(items=[AssignmentOut.model_validate(row) for row in rows], count=count)


@router.post(
    "/schedules/{schedule_id}/assignments",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409),
)
async def create_assignment(
    schedule_id: uuid.UUID, body: AssignmentIn, principal: Writer, session: SessionDep
) -> AssignmentCreated:
    assignment, warnings = await service.create_assignment(session, principal, schedule_id, body)
    return AssignmentCreated(
        **AssignmentOut.model_validate(assignment).model_dump(),
        warnings=[ViolationOut.of(v) for v in warnings],
    )


@router.delete(
    "/schedules/{schedule_id}/assignments/{assignment_id}",
    status_code=NO_CONTENT,
    responses=error_responses(404),
)
async def delete_assignment(
    schedule_id: uuid.UUID, assignment_id: uuid.UUID, principal: Writer, session: SessionDep
) -> None:
    await service.delete_assignment(session, principal, schedule_id, assignment_id)


@router.get("/schedules/{schedule_id}/calls", responses=error_responses(404))
async def list_calls(
    schedule_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    page: PageParamsDep,
    person_id: uuid.UUID | None = None,
) -> Page[CallOut]:
    rows, count = await calls.list_calls(session, principal, schedule_id, page, person_id=person_id)
    return Page(items=[CallOut.model_validate(row) for row in rows], count=count)


@router.post(
    "/schedules/{schedule_id}/calls",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409),
)
async def add_call(
    schedule_id: uuid.UUID, body: CallIn, principal: Writer, session: SessionDep
) -> CallCreated:
    """A call period by hand; `warnings` are the rule violations it causes."""
    call, warnings = await calls.add_call(session, principal, schedule_id, body)
    return CallCreated(
        **CallOut.model_validate(call).model_dump(),
        warnings=[ViolationOut.of(v) for v in warnings],
    )


@router.delete(
    "/schedules/{schedule_id}/calls/{call_id}",
    status_code=NO_CONTENT,
    responses=error_responses(404, 409),
)
async def delete_call(
    schedule_id: uuid.UUID, call_id: uuid.UUID, principal: Writer, session: SessionDep
) -> None:
    await calls.delete_call(session, principal, schedule_id, call_id)


# --- swaps --------------------------------------------------------------------------------------


@router.post("/swaps", status_code=status.HTTP_201_CREATED, responses=error_responses(404, 409))
async def request_swap(
    body: SwapIn, principal: Reader, session: SessionDep, request: Request
) -> SwapOut:
    quota = _settings(request).quota_waiting_threads
    return SwapOut.model_validate(await swaps.request_swap(session, principal, body, quota=quota))


@router.post("/swaps/{swap_id}/accept", responses=error_responses(404, 409))
async def accept_swap(swap_id: uuid.UUID, principal: Reader, session: SessionDep) -> SwapOut:
    """The counterpart accepts (or a coordinator records their acceptance)."""
    return SwapOut.model_validate(await swaps.accept_swap(session, principal, swap_id))


@router.post("/swaps/{swap_id}/withdraw", responses=error_responses(404, 409))
async def withdraw_swap(swap_id: uuid.UUID, principal: Reader, session: SessionDep) -> SwapOut:
    """Either person in the swap (or a coordinator) takes it back while it is pending."""
    return SwapOut.model_validate(await swaps.withdraw_swap(session, principal, swap_id))


@router.get("/swaps/{swap_id}", responses=error_responses(404))
async def get_swap(swap_id: uuid.UUID, principal: Reader, session: SessionDep) -> SwapOut:
    return SwapOut.model_validate(await swaps.get_swap(session, principal, swap_id))
