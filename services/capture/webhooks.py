"""Ad-platform webhooks: Meta Lead Ads, Google Ads lead forms, LinkedIn Lead Sync."""

from __future__ import annotations

import logging
import time
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from schemas.base import utcnow
from schemas.topics import TopicName
from services.capture import platforms
from services.capture.fetch_queue import FetchJob, Platform
from services.capture.ingest import Outcome, Status
from services.capture.keys import CAPTURE_METRICS, FETCHER, INGESTOR, SETTINGS
from services.capture.responses import problem
from services.capture.routes import answer, parse_json
from services.runtime.errors import FieldProblem, field_problems, summarise

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/webhooks/meta", meta_handshake)
    app.router.add_post("/v1/webhooks/meta", meta_webhook)
    app.router.add_post("/v1/webhooks/google", google_webhook)
    app.router.add_get("/v1/webhooks/linkedin", linkedin_challenge)
    app.router.add_post("/v1/webhooks/linkedin", linkedin_webhook)


def _not_configured(platform: str) -> web.Response:
    return problem(503, "not_configured", f"the {platform} webhook secret is not configured")


def _refuse(request: web.Request, platform: str, reason: str = "invalid_signature") -> web.Response:
    request.app[CAPTURE_METRICS].rejected.labels(f"{platform}_{reason}").inc()
    return problem(401 if reason == "invalid_signature" else 403, reason, "the request is not verified")


M = TypeVar("M", bound=BaseModel)


def _payload(model: type[M], data: object) -> M | web.Response:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return problem(422, "validation_failed", "unexpected payload shape", fields=field_problems(exc))


def _ack(outcomes: list[Outcome], refused: list[FieldProblem] | None = None) -> web.Response:
    """What a delivery published; `refused`: the parts of it that could not be read, and why."""
    published = sum(1 for o in outcomes if o.status is Status.ACCEPTED)
    duplicates = len(outcomes) - published
    body: dict[str, object] = {"status": "ok", "published": published, "duplicates": duplicates}
    if refused:
        body["refused"] = refused
    return web.json_response(body)


async def meta_handshake(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].meta_verify_token
    if token is None:
        return _not_configured("meta")
    query = request.query
    if query.get("hub.mode") == "subscribe" and platforms.google_key_ok(
        query.get("hub.verify_token"), token.get_secret_value()
    ):
        return web.Response(text=query.get("hub.challenge", ""))
    return _refuse(request, "meta", "invalid_verify_token")


async def meta_webhook(request: web.Request) -> web.Response:
    """Publish each lead id at once, then fetch its contact from the Graph API in the background
    (a fetch queued in Redis, services/capture/contact_fetch.py)."""
    settings = request.app[SETTINGS]
    if settings.meta_app_secret is None:
        return _not_configured("meta")
    raw = await request.read()
    header = request.headers.get("X-Hub-Signature-256")
    if not platforms.meta_signature_ok(raw, header, settings.meta_app_secret.get_secret_value()):
        return _refuse(request, "meta")
    data = parse_json(request, raw)
    if isinstance(data, web.Response):
        return data
    payload = _payload(platforms.MetaWebhook, data)
    if isinstance(payload, web.Response):
        return payload
    leads, refused = platforms.meta_leads(payload)
    if refused:  # answered 200 with the rest: refused, Meta would send them all again, for ever
        log.error("meta webhook: leadgen changes left out: %s", summarise(refused))
        request.app[CAPTURE_METRICS].rejected.labels("invalid_platform_lead").inc(len(refused))
    outcomes: list[Outcome] = []
    for lead in leads:
        record = platforms.meta_lead_interaction(lead, utcnow(), max_ahead=settings.max_clock_ahead)
        outcome = await request.app[INGESTOR].submit(
            settings.topic(TopicName.INTERACTIONS), record, f"meta:{lead.leadgen_id}"
        )
        if not outcome.ok:
            return answer(request, outcome)  # Meta retries; leads published so far are deduplicated
        # a duplicate too: the delivery before may have died between its publish and this
        await _fetch_contact(request.app, "meta", lead.leadgen_id, lead)
        outcomes.append(outcome)
    return _ack(outcomes, refused)


async def google_webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.google_key is None:
        return _not_configured("google")
    data = parse_json(request, await request.read())
    if isinstance(data, web.Response):
        return data
    presented = data.get("google_key") if isinstance(data, dict) else None
    if not platforms.google_key_ok(
        presented if isinstance(presented, str) else None, settings.google_key.get_secret_value()
    ):
        return _refuse(request, "google", "invalid_google_key")
    lead = _payload(platforms.GoogleLead, data)
    if isinstance(lead, web.Response):
        return lead
    record = platforms.google_interaction(lead, utcnow())
    outcome = await request.app[INGESTOR].submit(
        settings.topic(TopicName.INTERACTIONS), record, f"google:{lead.lead_id}"
    )
    if not outcome.ok:
        return answer(request, outcome)
    return _ack([outcome])


async def linkedin_challenge(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS].linkedin_client_secret
    if secret is None:
        return _not_configured("linkedin")
    code = request.query.get("challengeCode")
    if not code:
        return problem(400, "missing_challenge", "challengeCode is required")
    response = platforms.linkedin_challenge_response(code, secret.get_secret_value())
    return web.json_response({"challengeCode": code, "challengeResponse": response})


async def linkedin_webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    secret = settings.linkedin_client_secret
    if secret is None:
        return _not_configured("linkedin")
    raw = await request.read()
    if not platforms.linkedin_signature_ok(
        raw, request.headers.get("X-LI-Signature"), secret.get_secret_value()
    ):
        return _refuse(request, "linkedin")
    data = parse_json(request, raw)
    if isinstance(data, web.Response):
        return data
    note = _payload(platforms.LinkedInNotification, data)
    if isinstance(note, web.Response):
        return note
    record = platforms.linkedin_record(note, utcnow(), max_ahead=settings.max_clock_ahead)
    erase = record.record_type == "privacy"
    dropped = True
    if erase:
        # Dropped before the erasure is published, not after: a fetch finishing in between would
        # find its job still queued and publish the answers after the erasure, and an erasure the
        # broker does not take (503, LinkedIn retries later) would leave the fetch running meanwhile.
        dropped = await request.app[FETCHER].cancel("linkedin", note.leadGenFormResponse)
    topic = TopicName.PRIVACY if erase else TopicName.INTERACTIONS
    outcome = await request.app[INGESTOR].submit(
        settings.topic(topic), record, platforms.linkedin_sender_id(note)
    )
    if not outcome.ok:
        return answer(request, outcome)
    if erase and not dropped:
        # The erasure is out, but the queued fetch could not be dropped (Redis away): this process
        # drops it once Redis answers, unless it stops first. LinkedIn delivers the DELETED again on
        # a 5xx, and that delivery drops it; the erasure it publishes again is idempotent.
        return problem(
            503,
            "fetch_not_dropped",
            "the erasure was published, but the lead's contact fetch could not be dropped yet; retry",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    if not erase and settings.linkedin_access_token is not None:
        # a duplicate too (the delivery before may have died before queueing); the queue keeps a lead
        # deleted since from being fetched again
        await _fetch_contact(request.app, "linkedin", note.leadGenFormResponse, note)
    return _ack([outcome])


async def _fetch_contact(app: web.Application, platform: Platform, ref: str, lead: BaseModel) -> None:
    """Queue the fetch of a published lead's answers (services/capture/contact_fetch.py)."""
    job = FetchJob(platform=platform, ref=ref, lead=lead.model_dump(mode="json"), queued_at=time.time())
    await app[FETCHER].enqueue(job)
