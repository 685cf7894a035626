"""FastAPI dependencies of the jobs domain, for every router that submits or controls jobs."""

from typing import Annotated

from fastapi import Depends, Request

from tandem.jobs.service import JobControl


# async: FastAPI runs a plain `def` dependency in a worker thread, a hand-over per request.
async def get_job_control(request: Request) -> JobControl:
    jobs: JobControl = request.app.state.job_control
    return jobs


JobControlDep = Annotated[JobControl, Depends(get_job_control)]
