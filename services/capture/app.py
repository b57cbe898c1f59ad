"""create_app(settings) -> aiohttp Application: capture's HTTP API, metrics and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from schemas.base import utcnow
from schemas.interaction import InteractionIn
from schemas.topics import TopicName
from services.capture import domain
from services.capture.auth import Handler, api_key_middleware
from services.capture.metrics import CaptureMetrics, capture_metrics
from services.capture.publisher import BrokerUnavailable, KafkaPublisher, Publisher
from services.capture.responses import problem
from services.capture.settings import CaptureSettings
from services.runtime.codec import encode
from services.runtime.errors import field_problems
from services.runtime.health import Health, peers_ready
from services.runtime.metrics import METRICS_CONTENT_TYPE, CommonMetrics, common_metrics
from services.runtime.topics import ensure_pipeline_topics

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", CaptureSettings)
PUBLISHER = web.AppKey("publisher", Publisher)
METRICS = web.AppKey("metrics", CommonMetrics)
CAPTURE_METRICS = web.AppKey("capture_metrics", CaptureMetrics)
HEALTH = web.AppKey("health", Health)


def create_app(settings: CaptureSettings, publisher: Publisher | None = None) -> web.Application:
    metrics = common_metrics("capture")
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[_errors_and_metrics, api_key_middleware(settings.api_key_hashes)],
    )
    app[SETTINGS] = settings
    app[PUBLISHER] = publisher or KafkaPublisher(settings.bootstrap_servers, settings.publish_timeout)
    app[METRICS] = metrics
    app[CAPTURE_METRICS] = capture_metrics(metrics.registry)
    health = Health("capture")
    health.add("broker", app[PUBLISHER].reachable)
    health.add("peers", peers_ready(settings.ready_peers, aiohttp.ClientSession))
    app[HEALTH] = health
    app.router.add_post("/v1/events", post_event)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Create missing topics in the background (the broker may come up later), close the producer."""
    task = asyncio.create_task(_ensure_topics_until_done(app[SETTINGS]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await app[PUBLISHER].close()


async def _ensure_topics_until_done(settings: CaptureSettings) -> None:
    while True:
        try:
            await ensure_pipeline_topics(settings, give_up_after=10)
            return
        except Exception as exc:
            log.warning("topics not ensured yet (%s); retrying", exc)
            await asyncio.sleep(2)


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        response = problem(413, "body_too_large", f"the request body exceeds {limit} bytes")
    except web.HTTPException as exc:
        response = problem(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    request.app[CAPTURE_METRICS].requests.labels(route, str(response.status)).inc()
    return response


async def post_event(request: web.Request) -> web.Response:
    started = time.perf_counter()
    metrics = request.app[CAPTURE_METRICS]
    raw = await request.read()
    try:
        event = InteractionIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = field_problems(exc)
        if any(p["reason"].startswith("Invalid JSON") for p in problems):
            metrics.rejected.labels("invalid_json").inc()
            return problem(400, "invalid_json", "the body is not valid JSON", fields=problems)
        metrics.rejected.labels("validation_failed").inc()
        return problem(422, "validation_failed", "the event is not valid", fields=problems)

    interaction = domain.to_interaction(event, received_at=utcnow())
    settings = request.app[SETTINGS]
    topic = settings.topic(TopicName.INTERACTIONS)
    try:
        ack = await request.app[PUBLISHER].publish(topic, interaction.lead_id.encode(), encode(interaction))
    except BrokerUnavailable as exc:
        metrics.rejected.labels("broker_unavailable").inc()
        log.warning("broker unavailable, answering 503: %s", exc)
        return problem(
            503,
            "broker_unavailable",
            "the event was not stored; retry later with the same event_id",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    metrics.published.labels(interaction.type.value, interaction.source.channel or "unknown").inc()
    metrics.publish_seconds.observe(time.perf_counter() - started)
    request.app[METRICS].events_out.labels("capture", topic).inc()
    return web.json_response(
        {
            "status": "accepted",
            "event_id": interaction.event_id,
            "lead_id": interaction.lead_id,
            "identity": interaction.identity.value,
            "partition": ack.partition,
            "offset": ack.offset,
        },
        status=202,
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"service": "capture", "status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = await request.app[HEALTH].report()
    return web.json_response(
        {"service": "capture", "ready": ready, "checks": checks}, status=200 if ready else 503
    )


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})
