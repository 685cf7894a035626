"""The application factory. Everything stateful is built in the lifespan from the settings."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tandem import __version__, health
from tandem.db import create_engine, create_sessionmaker
from tandem.errors import install_error_handlers
from tandem.observability import HttpMetrics, RequestContextMiddleware
from tandem.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.readiness_checks = {"database": health.database_check(engine)}
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="Tandem",
        version=__version__,
        description="AI agents do the work; people stay in charge.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = HttpMetrics()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    app.include_router(health.router)
    return app
