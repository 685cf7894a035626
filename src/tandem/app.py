"""The application factory. Everything stateful is built in the lifespan from the settings."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tandem import __version__, console, health
from tandem.agents.router import router as agents_router
from tandem.audit.router import router as audit_router
from tandem.body_limit import BodySizeLimitMiddleware
from tandem.content.router import router as content_router
from tandem.db import bind_session_info, create_engine, create_sessionmaker
from tandem.direct_reads import create_direct_reads
from tandem.errors import install_error_handlers
from tandem.http_headers import SecurityHeadersMiddleware, install_docs
from tandem.identity import router as identity
from tandem.identity.credential_cache import SHARED_EPOCH_KEY, CredentialCache, SharedEpoch
from tandem.identity.principal import SECURITY_SCHEMES
from tandem.identity.security import TokenSigner, resolve_jwt_secret
from tandem.jobs.dispatch import Dispatch, InProcessDispatch, bind_dispatch
from tandem.jobs.distributed import ProcrastinateDispatch
from tandem.jobs.executor import Executor
from tandem.jobs.router import router as jobs_router
from tandem.jobs.runner import JobMetrics, JobRunner, worker_name
from tandem.jobs.service import JobControl, count_jobs_by_status
from tandem.notifications.dispatcher import OutboxDispatcher
from tandem.notifications.router import router as notifications_router
from tandem.notifications.transport import transport_from_settings
from tandem.observability import HttpMetrics, RequestContextMiddleware
from tandem.ratelimit import RateLimiter
from tandem.review.router import router as review_router
from tandem.scheduling.router import router as scheduling_router
from tandem.settings import JobExecutor, Settings
from tandem.tasks import TaskResources, task_registry
from tandem.unsafe_input import UnsafeInputMiddleware
from tandem.webhooks.router import router as webhooks_router


def _embedded_executor(
    settings: Settings, app: FastAPI, dispatch: InProcessDispatch, resources: TaskResources
) -> Executor | None:
    """The in-process executor, unless this process serves the API only."""
    if not settings.worker_enabled or settings.job_executor is not JobExecutor.embedded:
        return None
    runner = JobRunner(
        sessionmaker=app.state.sessionmaker,
        read_sessionmaker=app.state.read_sessionmaker,
        registry=task_registry(),
        settings=settings,
        dispatch=dispatch,
        worker=worker_name("embedded"),
        metrics=app.state.job_metrics,
        resources=resources.mapping,
    )
    executor = Executor(runner, dispatch)
    app.state.executor = executor
    return executor


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.token_signer = TokenSigner(
            secret=resolve_jwt_secret(settings),
            issuer=settings.jwt_issuer,
            algorithm=settings.jwt_algorithm,
            ttl=timedelta(minutes=settings.access_token_minutes),
        )
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        read_engine = create_engine(
            settings.database_url, pool_size=settings.database_pool_size, read_only=True
        )
        app.state.read_engine = read_engine
        app.state.read_sessionmaker = create_sessionmaker(read_engine)
        direct_reads = create_direct_reads(
            settings.database_url, read_engine.dialect, pool_size=settings.database_pool_size
        )
        app.state.direct_reads = direct_reads
        if direct_reads is not None:
            await direct_reads.open()
        # On the read engine: on SQLite the writing one is a single connection, and the
        # probe must not queue behind the process's writers.
        app.state.readiness_checks = {"database": health.database_check(read_engine)}
        # Across processes through Redis (`tandem serve --workers N` needs it): see
        # identity/credential_cache.py.
        shared_epoch = SharedEpoch(settings.redis_url) if settings.redis_url else None
        app.state.credential_cache = CredentialCache(shared_epoch)
        bind_session_info(app.state.sessionmaker, **{SHARED_EPOCH_KEY: shared_epoch})
        rate_limiter = RateLimiter.from_settings(settings)
        app.state.rate_limiter = rate_limiter
        if settings.redis_url:
            app.state.readiness_checks["redis"] = rate_limiter.ping
        dispatch = InProcessDispatch()
        # procrastinate: jobs are deferred to `tandem worker` processes, none run here.
        submit_dispatch: Dispatch = (
            ProcrastinateDispatch()
            if settings.job_executor is JobExecutor.procrastinate
            else dispatch
        )
        # Jobs that services submit deep inside a request or a job are dispatched alike.
        bind_dispatch(app.state.sessionmaker, submit_dispatch)
        resources = TaskResources(settings)
        app.state.agent_models = resources.mapping["agent_models"]  # streamed runs
        executor = _embedded_executor(settings, app, dispatch, resources)
        app.state.job_control = JobControl(task_registry(), submit_dispatch, executor)
        app.state.metrics_refreshers = [
            partial(count_jobs_by_status, app.state.sessionmaker, job_metrics)
        ]
        # After everything it needs exists; stopped first, before the engine is disposed.
        outbox = OutboxDispatcher(
            app.state.sessionmaker, transport_from_settings(settings), settings
        )
        app.state.outbox = outbox
        outbox.start()
        if executor is not None:
            executor.start()
        try:
            yield
        finally:
            if executor is not None:
                await executor.stop()
            await outbox.stop()
            await resources.aclose()
            await rate_limiter.close()
            app.state.credential_cache.close()
            await read_engine.dispose()
            if direct_reads is not None:
                await direct_reads.close()
            await engine.dispose()

    app = FastAPI(
        title="Tandem",
        version=__version__,
        description="AI agents do the work; people stay in charge.",
        lifespan=lifespan,
        # Tandem's observability is its Prometheus metrics and request-id logs; FastAPI's
        # native OpenTelemetry looked up the global providers on every request (~15 us).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,
        redoc_url=None,
        # Off in production unless TANDEM_API_DOCS=true: the map of every route helps attackers.
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.state.metrics = HttpMetrics()
    job_metrics = JobMetrics(app.state.metrics.registry)
    app.state.job_metrics = job_metrics
    install_error_handlers(app)
    # Inside the size limit, which bounds the body it reads whole.
    app.add_middleware(UnsafeInputMiddleware)
    # Inside the request context, so that a 413 has a request id and is counted too.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    # Outside the request context (its 500s get the headers too), inside the proxy headers
    # (HSTS sees the scheme the client used).
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.forwarded_allow_ips:
        # Outermost: every layer sees the client's address, read from the trusted proxies'
        # X-Forwarded-For (the rightmost entry not itself a trusted proxy).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    # FastAPI matches a request against the routes one after the other, included routers in
    # the order included (a few microseconds a route): the API most requests reach comes
    # first, the docs and the console after it. No two routers share a path, so the order
    # changes nothing else.
    app.include_router(health.router)
    app.include_router(agents_router)
    app.include_router(jobs_router)
    app.include_router(identity.public)
    app.include_router(identity.router)
    app.include_router(scheduling_router)
    app.include_router(content_router)
    app.include_router(review_router)
    app.include_router(webhooks_router)
    app.include_router(audit_router)
    app.include_router(notifications_router)
    if settings.docs_enabled:
        install_docs(app)
    console.install(app)
    _document_security_schemes(app)
    return app


def _document_security_schemes(app: FastAPI) -> None:
    """The two credentials in OpenAPI's components, which the ApiRoutes' operations name."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        schema.setdefault("components", {}).setdefault("securitySchemes", SECURITY_SCHEMES)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
