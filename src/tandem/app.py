"""The application factory. Everything stateful is built in the lifespan from the settings."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from tandem import __version__, health
from tandem.db import create_engine, create_sessionmaker
from tandem.errors import install_error_handlers
from tandem.identity import router as identity
from tandem.identity.security import TokenSigner, resolve_jwt_secret
from tandem.notifications.dispatcher import OutboxDispatcher
from tandem.notifications.transport import transport_from_settings
from tandem.observability import HttpMetrics, RequestContextMiddleware
from tandem.ratelimit import RateLimiter
from tandem.settings import Settings


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
        app.state.readiness_checks = {"database": health.database_check(engine)}
        rate_limiter = RateLimiter.from_settings(settings)
        app.state.rate_limiter = rate_limiter
        if settings.redis_url:
            app.state.readiness_checks["redis"] = rate_limiter.ping
        # After everything it needs exists; stopped first, before the engine is disposed.
        outbox = OutboxDispatcher(
            app.state.sessionmaker, transport_from_settings(settings), settings
        )
        app.state.outbox = outbox
        outbox.start()
        try:
            yield
        finally:
            await outbox.stop()
            await rate_limiter.close()
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
    app.include_router(identity.public)
    app.include_router(identity.router)
    return app
