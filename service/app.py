"""The FastAPI app: settings, store, portfolio and secrets read once at start-up, then the routers.

Started by ``leadscore api`` (uvicorn, ``service.app:create_app`` as a factory) or any ASGI server.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from nurture.spec import load_nurture
from nurture.tokens import check_secret
from service import content, feedback, identity, intake, privacy, scores, tracking, unsubscribe
from service.config import ServiceSettings
from service.console import mount as mount_console
from service.hot import HotRoutes
from service.limits import BodyLimit, RateLimiter, rate_file
from service.metrics import Metrics, MetricsMiddleware
from service.state import KeyCache, Service
from service.writer import GroupWriter
from stages.portfolio import load_portfolio
from store.db import make_engine
from store.lookups import ScoreLookup
from store.reader import row_reads

# On SQLite the writer commits a few thousand events every few tens of milliseconds, on pages all over the
# lead-clustered events table: at SQLite's default (1,000 pages) nearly every commit also checkpointed the
# log, copying into the database the pages the commit before had copied already. At 8,192 pages (32 MB;
# 128 MB with a new store's 16 KB pages, ``store.db.SQLITE_PAGE_BYTES``)
# a page rewritten by several commits is copied once (measured: commit CPU 3.3 → 2.3 µs an event).
WAL_CHECKPOINT_PAGES = 8_192


def build_service(settings: ServiceSettings) -> Service:
    """Open the store (migrated), load the portfolio, check the secrets: any problem stops the start."""
    secrets = [check_secret(settings.unsubscribe_secret.get_secret_value() if settings.unsubscribe_secret else None)]
    if settings.unsubscribe_secret_previous is not None:
        previous = settings.unsubscribe_secret_previous.get_secret_value()
        secrets.append(check_secret(previous, "LEADSCORE_UNSUBSCRIBE_SECRET_PREVIOUS"))
    engine = make_engine(settings.database_url, wal_checkpoint_pages=WAL_CHECKPOINT_PAGES)
    portfolio = load_portfolio(settings.portfolio_file())
    nurture = load_nurture(portfolio)
    tracks: dict[str, list[str]] = {}
    for name, track in nurture.tracks.items():
        tracks.setdefault(track.entry.product_line, []).append(name)

    erasure_key = settings.erasure_key()
    erasure_secret = erasure_key.get_secret_value() if erasure_key is not None else None

    writer = GroupWriter(
        intake.Intake(engine, portfolio, erasure_secret).take,
        settings.api_writer_batch,
        serialize_calls=engine.dialect.name == "sqlite",
        linger=settings.api_writer_linger_ms / 1000,
        lanes=settings.api_writer_lanes,
    )
    return Service(
        settings=settings,
        engine=engine,
        fresh_engine=row_reads(engine),
        portfolio=portfolio,
        secrets=secrets,
        tracks=tracks,
        feedback_keys=settings.feedback_keys(),
        tracking=nurture.tracking is not None,
        content=nurture.content,
        keys=KeyCache(engine, settings.api_key_cache_seconds),
        limiter=RateLimiter(
            settings.api_rate_file or rate_file(settings.database_url),
            settings.api_rate_per_second,
            settings.api_rate_burst,
        ),
        lookup=ScoreLookup(engine),
        metrics=Metrics(),
        writer=writer,
    )


def create_app(settings: ServiceSettings | None = None) -> HotRoutes:
    """The app; ``settings`` default to the environment (read here, at start-up, once). The FastAPI app is
    wrapped in ``HotRoutes``, which answers the hot routes before even its error middleware (``.app``)."""
    service = build_service(settings or ServiceSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.writer.start()
        # What start-up made (modules, the portfolio, the app) lives as long as the process: kept out of
        # the collector's sweeps, whose pauses would otherwise land on requests (the tail latency).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await service.writer.stop()
            service.lookup.close()
            service.limiter.close()
            service.engine.dispose()

    app = FastAPI(
        title="leadscore",
        summary="Events in, email feedback, unsubscribes and real-time scores",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    app.include_router(intake.router)
    app.include_router(privacy.router)
    app.include_router(scores.router)
    app.include_router(unsubscribe.router)
    app.include_router(feedback.router)
    app.include_router(tracking.router)
    app.include_router(content.router)
    app.include_router(identity.router)
    mount_console(
        app, service.portfolio, service.tracks
    )  # the console (issue #19), when LEADSCORE_SESSION_SECRET is set

    @app.get("/healthz", tags=["operations"], summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="The store answers")
    async def readyz() -> Response:
        try:
            await run_in_threadpool(_ping, service.engine)
        except Exception as exc:  # any store failure means "not ready", with its class only (no secrets)
            return JSONResponse({"status": "unavailable", "store": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready", "store": service.engine.dialect.name})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The last added runs outermost: metrics see every answer (413s too), CORS answers before the body limit.
    app.add_middleware(BodyLimit, max_bytes=service.settings.api_max_body_bytes)
    if service.settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=service.settings.api_cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization", "X-API-Key"],
        )
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return HotRoutes(app, service)


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
