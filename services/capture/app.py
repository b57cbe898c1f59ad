"""create_app(settings) -> aiohttp Application: capture's HTTP API, metrics and health."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from schemas.topics import TopicName
from services.capture import routes, webhooks
from services.capture.auth import api_key_middleware
from services.capture.contact_fetch import ContactFetcher, linkedin_fetch, meta_fetch
from services.capture.fetch_queue import FetchQueue
from services.capture.forms import load_forms
from services.capture.guard import Deduplicator, RateLimiter
from services.capture.ingest import Ingestor
from services.capture.keys import (
    CAPTURE_METRICS,
    CONSUMER_LAGS,
    FETCHER,
    FORMS,
    HEALTH,
    HTTP,
    INGESTOR,
    METRICS,
    PUBLISHER,
    RATE_LIMITER,
    REDIS,
    SETTINGS,
)
from services.capture.metrics import FETCH_PLATFORMS, capture_metrics
from services.capture.middleware import cors_middleware, errors_and_metrics, rate_limit_middleware
from services.capture.openapi import openapi_view
from services.capture.publisher import KafkaPublisher, Publisher
from services.capture.settings import CaptureSettings
from services.runtime.cancellation import cancel_and_wait
from services.runtime.health import Health, peers_ready
from services.runtime.metrics import METRICS_CONTENT_TYPE, common_metrics
from services.runtime.redis_client import redis_client
from services.runtime.topic_config import TopicConfigError
from services.runtime.topics import ensure_pipeline_topics, topic_plan

log = logging.getLogger(__name__)

# Senders that prove themselves another way (signatures, form honeypots, signed links).
PUBLIC_PREFIXES = ("/v1/webhooks/", "/v1/forms/", "/v1/consent/confirm")


def create_app(settings: CaptureSettings, publisher: Publisher | None = None) -> web.Application:
    """The topics file is validated here, so a broken one stops start-up naming the file and the key
    (TopicConfigError) instead of leaving capture retrying it in the background."""
    topic_plan(settings)
    metrics = common_metrics("capture")
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            errors_and_metrics,
            cors_middleware(settings.cors_origins),
            api_key_middleware(settings.api_key_hashes, public_prefixes=PUBLIC_PREFIXES),
            rate_limit_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[PUBLISHER] = publisher or KafkaPublisher(
        settings.bootstrap_servers, settings.publish_timeout, settings.max_record_bytes
    )
    app[METRICS] = metrics
    app[CONSUMER_LAGS] = {}
    app[CAPTURE_METRICS] = capture_metrics(metrics.registry)
    redis = redis_client(settings.redis_url, settings.redis_timeout)
    app[REDIS] = redis
    dedupe = Deduplicator(
        redis,
        window_seconds=settings.dedupe_window_seconds,
        pending_seconds=int(settings.publish_timeout * 2) + 5,
        namespace=settings.topic_suffix,
    )
    app[INGESTOR] = Ingestor(
        app[PUBLISHER], dedupe, app[CAPTURE_METRICS], metrics, max_record_bytes=settings.max_record_bytes
    )
    app[RATE_LIMITER] = RateLimiter(
        redis, per_minute=settings.rate_limit_per_minute, namespace=settings.topic_suffix
    )
    app[FORMS] = load_forms(settings.forms_file)
    health = Health("capture")
    health.add("broker", app[PUBLISHER].reachable)
    health.add("peers", peers_ready(settings.ready_peers, aiohttp.ClientSession))
    app[HEALTH] = health
    routes.add_routes(app)
    webhooks.add_routes(app)
    from services.capture import privacy_api  # erasure, export (admin key), consent proof ledger

    privacy_api.add_routes(app)
    from services.capture import tracking  # e-mail open, click and unsubscribe links (public, signed)

    tracking.add_routes(app)
    app.router.add_get("/openapi.json", openapi_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Create missing topics in the background (the broker may come up later); close clients."""
    settings = app[SETTINGS]
    task = asyncio.create_task(_ensure_topics_until_done(settings))
    http = app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    app[FETCHER] = ContactFetcher(
        FetchQueue(
            app[REDIS],
            namespace=settings.topic_suffix,
            on_set_aside=lambda job: (
                app[CAPTURE_METRICS].contact_fetches.labels(_platform_of(job), "set_aside").inc()
            ),
        ),
        fetches={"meta": meta_fetch(http, settings), "linkedin": linkedin_fetch(http, settings)},
        ingestor=app[INGESTOR],
        topic=settings.topic(TopicName.INTERACTIONS),
        settings=settings,
        metrics=app[CAPTURE_METRICS],
    )
    fetching = asyncio.create_task(app[FETCHER].run())
    yield
    for background in (task, fetching):
        await cancel_and_wait(background)
    await app[HTTP].close()
    await app[PUBLISHER].close()
    await app[REDIS].aclose()


def _platform_of(job_id: str) -> str:
    """A job's platform label (its id is `<platform>:<ref>`), "unknown" for one unreadable there too."""
    platform = job_id.split(":", 1)[0]
    return platform if platform in FETCH_PLATFORMS else "unknown"


async def _ensure_topics_until_done(settings: CaptureSettings) -> None:
    """Retry while the broker is away (capture accepts events meanwhile, `/readyz` says not ready);
    a topics file broken since start-up is an error to fix, not to retry."""
    while True:
        try:
            await ensure_pipeline_topics(settings, give_up_after=10)
            return
        except TopicConfigError as exc:
            log.error("topics not ensured, the topics file is invalid: %s", exc)
            return
        except Exception as exc:
            log.warning("topics not ensured yet (%s); retrying", exc)
            await asyncio.sleep(2)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"service": "capture", "status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = await request.app[HEALTH].report()
    return web.json_response(
        {"service": "capture", "ready": ready, "checks": checks}, status=200 if ready else 503
    )


async def metrics_view(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.consumer_lag.clear()  # partitions the privacy consumer gave up go with their series
    lags: dict[tuple[str, int], int] = request.app[CONSUMER_LAGS]
    metrics.show_lags("capture", lags)
    body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})
