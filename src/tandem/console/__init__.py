"""The web console at /ui: server-rendered pages for the people who stay in charge.

The pages call the same services as the API, in the same one-transaction-per-request
discipline; see docs/console.md.
"""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from tandem.console import agents, auth, jobs, links, review, schedules
from tandem.console.web import HERE


def install(app: FastAPI) -> None:
    """Adds the console's pages and its static files to `app`."""
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for module in (auth, links, review, jobs, schedules, agents):
        app.include_router(module.router)
