"""The `tandem` command: serve, worker, migrate, create-admin, plugins, version."""

import asyncio
import fcntl
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tandem import __version__
from tandem.app import create_app
from tandem.db import create_engine, create_sessionmaker, transaction_scope
from tandem.errors import TandemError
from tandem.identity.schemas import RegisterIn
from tandem.identity.security import InsecureSecret, resolve_jwt_secret
from tandem.identity.service import register
from tandem.jobs.distributed import DistributedWorker
from tandem.jobs.runner import JobMetrics
from tandem.migrations import current_revision, head_revision, upgrade_to_head
from tandem.observability import configure_logging
from tandem.plugins import Loaded, PluginError, load_all
from tandem.settings import EmailVerification, JobExecutor, RegistrationPolicy, Settings
from tandem.tasks import TaskResources, task_registry

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Tandem: agents work, people decide."
)
log = logging.getLogger("tandem.cli")


class SchemaOutdated(Exception):
    pass


async def prepare_database(settings: Settings, *, migrate: bool) -> str | None:
    """Bring the schema to head (SQLite, or when asked), or refuse an outdated one."""
    engine = create_engine(settings.database_url)
    try:
        if migrate or settings.is_sqlite:
            await upgrade_to_head(engine)
        current, head = await current_revision(engine), head_revision()
        if current != head:
            raise SchemaOutdated(
                f"The database schema is at revision {current or 'none'}, this version of Tandem "
                f"needs {head}. Run `tandem migrate` first, or start with `tandem serve --migrate`."
            )
        return current
    finally:
        await engine.dispose()


def _load_settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            typer.echo(f"Error: {where + ': ' if where else ''}{error['msg']}", err=True)
        raise typer.Exit(code=1) from exc
    configure_logging(json_output=settings.is_production, level=settings.log_level)
    return settings


def _load_plugins_or_exit() -> list[Loaded]:
    """Every agent, task and review kind, loaded now: a broken plugin stops start-up."""
    try:
        return load_all()
    except PluginError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from exc


def _prepare_or_exit(settings: Settings, *, migrate: bool) -> str | None:
    try:
        return asyncio.run(prepare_database(settings, migrate=migrate))
    except SchemaOutdated as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    except (SQLAlchemyError, OSError) as exc:
        typer.echo(f"Error: cannot reach the database ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(code=1) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Apply pending migrations before starting.")
    ] = False,
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker", help="Serve the API only; jobs run in `tandem worker` processes."
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes serving the port (needs TANDEM_REDIS_URL when more than 1). On "
            "SQLite exactly one of them runs jobs.",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (SQLite schema is migrated automatically)."""
    settings = _load_settings()
    _load_plugins_or_exit()
    if no_worker:
        settings = settings.model_copy(update={"worker_enabled": False})
    if workers > 1 and not settings.redis_url:
        typer.echo(
            f"Error: --workers {workers} needs TANDEM_REDIS_URL: rate limits kept in memory "
            f"would be counted per process, {workers} times the budget each.",
            err=True,
        )
        raise typer.Exit(code=1)
    try:
        resolve_jwt_secret(settings)
    except InsecureSecret as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    _prepare_or_exit(settings, migrate=migrate)
    # X-Forwarded-For is read by the app, from TANDEM_FORWARDED_ALLOW_IPS only: uvicorn's own
    # default would believe it from any client on 127.0.0.1.
    if workers == 1:
        uvicorn.run(
            frozen_after_startup(create_app(settings)),
            host=host,
            port=port,
            log_config=None,
            proxy_headers=False,
        )
        return
    # Each process builds its app from the environment (`serve_process_app`); what the
    # command line changed reaches them the same way.
    if no_worker:
        os.environ["TANDEM_WORKER_ENABLED"] = "false"
    uvicorn.run(
        "tandem.cli:serve_process_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
    )


def freeze_startup_heap() -> None:
    """Moves every object alive once the process is set up (modules, the app, its models:
    ~390,000 objects) out of the garbage collector's sight. A full collection walks them all,
    ~200 ms on a slow core, during which no request is served: under load that was every
    request's p99. They live as long as the process, so collecting them would find nothing.
    """
    gc.collect()
    gc.freeze()


def frozen_after_startup(api: FastAPI) -> FastAPI:
    """`api`, whose heap is frozen once its lifespan has started everything up."""
    started_by = api.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started_by(app) as state:
            freeze_startup_heap()
            yield state

    api.router.lifespan_context = lifespan
    return api


EXECUTOR_LOCK_SUFFIX = ".executor-lock"
_executor_lock: IO[bytes] | None = None


def _holds_executor_lock(settings: Settings) -> bool:
    """Whether this process may run the embedded executor on SQLite: the one process that
    holds an exclusive lock on a file beside the database (kept until it exits; a process
    started in place of a dead one takes it over)."""
    global _executor_lock
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return True
    lock = Path(database + EXECUTOR_LOCK_SUFFIX).open("ab")  # noqa: SIM115 (held while alive)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return False
    _executor_lock = lock
    return True


def serve_process_app() -> FastAPI:
    """The app of one process of `tandem serve --workers N`, from the environment.

    PostgreSQL: every process serves and runs jobs (claims skip the rows others locked).
    SQLite: every process serves (WAL lets them share the file), exactly one runs jobs: the
    others' jobs are run by it, and their synchronous agent runs see the result by polling.
    """
    settings = Settings()
    configure_logging(json_output=settings.is_production, level=settings.log_level)
    load_all()
    if settings.is_sqlite and settings.worker_enabled:
        runs_jobs = _holds_executor_lock(settings)
        settings = settings.model_copy(update={"worker_enabled": runs_jobs})
        log.info("Process %s %s jobs", os.getpid(), "runs" if runs_jobs else "does not run")
    return frozen_after_startup(create_app(settings))


async def run_worker(
    settings: Settings, concurrency: int | None = None, metrics: JobMetrics | None = None
) -> None:
    """One `tandem worker` until SIGTERM or SIGINT, then a graceful shutdown: running jobs
    get half the lease to finish and are handed back to the queue after that."""
    concurrency = concurrency or settings.job_concurrency
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # procrastinate logs two INFO lines per job; ours say what matters.
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
    engine = create_engine(
        settings.database_url, pool_size=max(settings.database_pool_size, concurrency + 2)
    )
    resources = TaskResources(settings)  # the same services tasks get in `tandem serve`
    try:
        worker = DistributedWorker(
            settings,
            create_sessionmaker(engine),
            task_registry(),
            concurrency=concurrency,
            metrics=metrics,
            resources=resources.mapping,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        await worker.run()
    finally:
        await resources.aclose()
        await engine.dispose()


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once (default: TANDEM_JOB_CONCURRENCY)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Serve Prometheus metrics on this port (default: none)."
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address the metrics port listens on.")
    ] = "127.0.0.1",
) -> None:
    """Run jobs from the shared PostgreSQL database until SIGTERM or SIGINT.

    Start any number, on any machine pointing at the same database; serve the API with
    `tandem serve --no-worker` and TANDEM_JOB_EXECUTOR=procrastinate.
    """
    settings = _load_settings()
    _load_plugins_or_exit()
    if settings.is_sqlite:
        typer.echo(
            "Error: `tandem worker` needs PostgreSQL (TANDEM_DATABASE_URL=postgresql+psycopg://"
            "...); on SQLite jobs run inside `tandem serve`.",
            err=True,
        )
        raise typer.Exit(code=1)
    if settings.job_executor is not JobExecutor.procrastinate:
        log.warning(
            "TANDEM_JOB_EXECUTOR is %s: servers with that setting run jobs themselves and "
            "defer none to workers; set TANDEM_JOB_EXECUTOR=procrastinate everywhere",
            settings.job_executor.value,
        )
    _prepare_or_exit(settings, migrate=False)
    metrics = None
    if metrics_port is not None:
        # The API's /metrics knows nothing of the jobs a worker ran: each worker has its own.
        registry = CollectorRegistry()
        metrics = JobMetrics(registry)
        start_http_server(metrics_port, addr=metrics_host, registry=registry)
        log.info("Metrics on http://%s:%s/metrics", metrics_host, metrics_port)
    freeze_startup_heap()
    asyncio.run(run_worker(settings, concurrency, metrics))


@app.command()
def migrate() -> None:
    """Apply every pending database migration."""
    settings = _load_settings()
    revision = _prepare_or_exit(settings, migrate=True)
    typer.echo(f"Database schema is at revision {revision}.")


async def _create_admin(settings: Settings, email: str, password: str, organization: str) -> str:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session, transaction_scope(session):
            # The operator at the console is trusted: no policy stops them, no link to follow.
            operator = settings.model_copy(
                update={
                    "registration": RegistrationPolicy.open,
                    "email_verification": EmailVerification.optional,
                }
            )
            user = await register(
                session,
                operator,
                email=email,
                password=password,
                full_name=email.split("@")[0],
                organization_name=organization,
            )
            return f"Created admin {user.email} ({user.id}) in organization {organization!r}."
    finally:
        await engine.dispose()


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's e-mail (their login).")],
    organization: Annotated[str, typer.Option(help="Name of the new organization.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="At least 12 characters; prompted for when omitted.",
        ),
    ],
) -> None:
    """Create an organization and its first admin, without HTTP."""
    settings = _load_settings()
    _prepare_or_exit(settings, migrate=settings.is_sqlite)
    try:
        data = RegisterIn(
            email=email,
            password=password,
            full_name=email.split("@")[0],
            organization_name=organization,
        )
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"Error: {error['loc'][0]}: {error['msg']}", err=True)
        raise typer.Exit(code=2) from exc
    try:
        message = asyncio.run(_create_admin(settings, data.email, data.password, organization))
    except TandemError as exc:
        typer.echo(f"Error: {exc.detail}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(message)


@app.command()
def plugins() -> None:
    """List the agents, tasks and review kinds loaded, and the package of each."""
    for loaded in _load_plugins_or_exit():
        typer.echo(f"{loaded.group:<20} {loaded.name:<24} {loaded.package:<24} {loaded.value}")


@app.command()
def version() -> None:
    """Print Tandem's version."""
    typer.echo(__version__)
