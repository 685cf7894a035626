"""HTTP for scheduling (API.md, "Scheduling"): parse, authorise, call one service function."""

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.pagination import Page, PageParamsDep
from tandem.scheduling import service, swaps
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
    GenerateAccepted,
    GenerateIn,
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

router = APIRouter(prefix="/api/v1", tags=["scheduling"], responses=error_responses(401, 403))

Reader = Annotated[Principal, Depends(require_scopes(Scope.schedule_read))]
Writer = Annotated[Principal, Depends(require_scopes(Scope.schedule_write))]
Admin = Annotated[Principal, Depends(require_scopes(Scope.schedule_admin))]
NO_CONTENT = status.HTTP_204_NO_CONTENT


# --- people -------------------------------------------------------------------------------------


@router.post("/people", status_code=status.HTTP_201_CREATED, responses=error_responses(409))
async def create_person(body: PersonIn, principal: Writer, session: SessionDep) -> PersonOut:
    return PersonOut.model_validate(await service.create_person(session, principal, body))


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


@router.post("/schedules", status_code=status.HTTP_201_CREATED)
async def create_schedule(body: ScheduleIn, principal: Writer, session: SessionDep) -> ScheduleOut:
    return ScheduleOut.model_validate(await service.create_schedule(session, principal, body))


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
async def delete_schedule(schedule_id: uuid.UUID, principal: Admin, session: SessionDep) -> None:
    await service.delete_schedule(session, principal, schedule_id)


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
    settings: Settings = request.app.state.settings
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


# --- swaps --------------------------------------------------------------------------------------


@router.post("/swaps", status_code=status.HTTP_201_CREATED, responses=error_responses(404, 409))
async def request_swap(body: SwapIn, principal: Reader, session: SessionDep) -> SwapOut:
    """A coordinator (schedule:write) asks for any swap; anyone else (schedule:read) only for
    an assignment they hold (their e-mail is the holder's): then the counterpart must accept."""
    return SwapOut.model_validate(await swaps.request_swap(session, principal, body))


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
