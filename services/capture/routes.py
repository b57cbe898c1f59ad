"""Capture's own API: events, batches, web forms and consent."""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from schemas.base import utcnow
from schemas.interaction import InteractionIn
from schemas.topics import TopicName
from services.capture import consent, domain, forms
from services.capture.api_models import WithdrawIn
from services.capture.auth import CLIENT
from services.capture.ingest import Outcome, Status
from services.capture.keys import CAPTURE_METRICS, FORMS, INGESTOR, SETTINGS
from services.capture.pipeline import accept, accept_many
from services.capture.responses import html_page, problem, wants_html
from services.runtime import consent_tokens
from services.runtime.errors import FieldProblem, field_problems


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_event)
    app.router.add_post("/v1/events:batch", post_batch)
    app.router.add_post("/v1/forms/{form_id}", post_form)
    app.router.add_get("/v1/consent/confirm", confirm_consent_page)  # also answers HEAD
    app.router.add_post("/v1/consent/confirm", confirm_consent)
    app.router.add_post("/v1/consent/withdraw", withdraw_consent)
    app.router.add_get("/static/leadpipe.js", snippet)


SNIPPET = Path(__file__).with_name("static") / "leadpipe.js"


async def snippet(request: web.Request) -> web.FileResponse:
    """The website snippet; public (outside /v1/), cached briefly so fixes reach sites soon."""
    return web.FileResponse(SNIPPET, headers={"Cache-Control": "public, max-age=300"})


def parse_json(request: web.Request, raw: bytes) -> object | web.Response:
    """Decoded JSON within the depth limit, or the 400 answer saying why not."""
    metrics = request.app[CAPTURE_METRICS]
    try:
        data: object = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        metrics.rejected.labels("invalid_json").inc()
        return problem(400, "invalid_json", "the body is not valid JSON", fields=[_body_problem(str(exc))])
    limit = request.app[SETTINGS].max_json_depth
    if domain.json_depth(data) > limit:
        metrics.rejected.labels("json_too_deep").inc()
        return problem(400, "json_too_deep", f"the JSON body is nested deeper than {limit} levels")
    return data


def _body_problem(reason: str) -> FieldProblem:
    return {"field": "(body)", "reason": reason}


def validate_event(
    request: web.Request, data: object, received_at: datetime
) -> InteractionIn | list[FieldProblem]:
    try:
        event = InteractionIn.model_validate(data)
    except ValidationError as exc:
        return field_problems(exc)
    settings = request.app[SETTINGS]
    if len(event.properties) > settings.max_properties:
        return [{"field": "properties", "reason": f"more than {settings.max_properties} keys"}]
    ahead = domain.clock_ahead_problem(event.occurred_at, received_at, settings.max_clock_ahead)
    if ahead is not None:
        return [{"field": "occurred_at", "reason": ahead}]
    return event


def unavailable(request: web.Request) -> web.Response:
    return problem(
        503,
        "broker_unavailable",
        "the event was not stored; retry later with the same event_id",
        headers={"Retry-After": str(request.app[SETTINGS].retry_after_seconds)},
    )


def too_large(outcome: Outcome) -> web.Response:
    """413: no retry can store a record over the size limit; the sender must send less."""
    reason = str(outcome.answer["message"])
    return problem(
        413,
        "record_too_large",
        f"the event was not stored and cannot be: {reason}; send a smaller event",
        fields=[_body_problem(reason)],
    )


def in_flight() -> web.Response:
    return problem(
        409, "in_flight", "the same id is being published right now; retry", headers={"Retry-After": "1"}
    )


def answer(request: web.Request, outcome: Outcome, status: int = 202) -> web.Response:
    if outcome.status is Status.UNAVAILABLE:
        return unavailable(request)
    if outcome.status is Status.IN_FLIGHT:
        return in_flight()
    if outcome.status is Status.TOO_LARGE:
        return too_large(outcome)
    return web.json_response(outcome.answer, status=status)


async def post_event(request: web.Request) -> web.Response:
    data = parse_json(request, await request.read())
    if isinstance(data, web.Response):
        return data
    received_at = utcnow()
    event = validate_event(request, data, received_at)
    if isinstance(event, list):
        request.app[CAPTURE_METRICS].rejected.labels("validation_failed").inc()
        return problem(422, "validation_failed", "the event is not valid", fields=event)
    outcome = await accept(
        request.app[INGESTOR],
        request.app[SETTINGS],
        event,
        received_at,
        ip_hash=client_ip_hash(request),
        client=request.get(CLIENT),
    )
    return answer(request, outcome)


async def post_batch(request: web.Request) -> web.Response:
    """Each event stands alone: accepted ones are published even when others are refused."""
    settings = request.app[SETTINGS]
    metrics = request.app[CAPTURE_METRICS]
    data = parse_json(request, await request.read())
    if isinstance(data, web.Response):
        return data
    items = data.get("events") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(items, list) or set(data) - {"events"}:
        metrics.rejected.labels("validation_failed").inc()
        reason = 'send {"events": [...]} and nothing else'
        return problem(
            422, "validation_failed", "not a batch", fields=[{"field": "events", "reason": reason}]
        )
    if len(items) > settings.max_batch:
        metrics.rejected.labels("batch_too_large").inc()
        return problem(413, "batch_too_large", f"a batch holds at most {settings.max_batch} events")
    received_at = utcnow()
    client = request.get(CLIENT)
    results: list[dict[str, object] | None] = [None] * len(items)
    pending: list[tuple[int, InteractionIn]] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        event = validate_event(request, item, received_at)
        if isinstance(event, list):
            metrics.rejected.labels("validation_failed").inc()
            results[index] = {
                "index": index,
                "status": "rejected",
                "error": "validation_failed",
                "fields": event,
            }
        elif event.event_id and event.event_id in first_index:
            published = domain.published_event_id(event.event_id, client)
            results[index] = {"index": index, "status": "duplicate", "event_id": published}
        else:
            if event.event_id:
                first_index[event.event_id] = index
            pending.append((index, event))
    outcomes = await accept_many(
        request.app[INGESTOR],
        settings,
        [(event, None) for _, event in pending],
        received_at,
        ip_hash=client_ip_hash(request),
        client=client,
    )
    for (index, _), outcome in zip(pending, outcomes, strict=True):
        if outcome.status is Status.TOO_LARGE:  # refused like an invalid event: no retry helps
            reason = str(outcome.answer["message"])
            results[index] = {
                "index": index,
                "status": "rejected",
                "error": "record_too_large",
                "fields": [{"field": "(event)", "reason": reason}],
            }
            continue
        status = "duplicate" if outcome.answer.get("duplicate") else outcome.status.value
        results[index] = {
            "index": index,
            "status": status,
            **{k: v for k, v in outcome.answer.items() if k in ("event_id", "lead_id")},
        }
    done = [r for r in results if r is not None]
    accepted = sum(1 for r in done if r["status"] in ("accepted", "duplicate"))
    if pending and all(o.status is Status.UNAVAILABLE for o in outcomes) and accepted == 0:
        return unavailable(request)
    return web.json_response(
        {"accepted": accepted, "refused": len(done) - accepted, "results": done}, status=200
    )


async def _form_fields(request: web.Request) -> Mapping[str, str] | web.Response:
    if request.content_type == "application/json":
        data = parse_json(request, await request.read())
        if isinstance(data, web.Response):
            return data
        if not isinstance(data, dict):
            return problem(422, "validation_failed", "send the form fields as a JSON object")
        fields = {}
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            texts = ["" if v is None else str(v) for v in values if not isinstance(v, dict | list)]
            if texts:  # an object is nothing a form sends
                fields[str(key)] = _joined(texts)
        return fields
    return await _posted(request)


def _joined(texts: list[str]) -> str:
    """A field's values as one text: a multi-select or a group of checkboxes sends one value each
    (`interest=pricing&interest=security`, or a JSON list), and every one is kept, comma-separated."""
    return ", ".join(text for text in texts if text) if len(texts) > 1 else texts[0]


async def _posted(request: web.Request) -> Mapping[str, str] | web.Response:
    """A urlencoded or multipart body's text fields, or the 400 saying it cannot be read (a multipart
    body without its boundary or with a broken part header, an unknown charset: aiohttp raises)."""
    try:
        posted = await request.post()
    except (ValueError, LookupError, HttpProcessingError) as exc:
        request.app[CAPTURE_METRICS].rejected.labels("invalid_form").inc()
        return problem(400, "invalid_form", "the form body cannot be read", fields=[_body_problem(str(exc))])
    texts = {key: [v for v in posted.getall(key) if isinstance(v, str)] for key in posted}
    return {key: _joined(values) for key, values in texts.items() if values}  # files are not fields


async def post_form(request: web.Request) -> web.StreamResponse:
    metrics = request.app[CAPTURE_METRICS]
    form_id = request.match_info["form_id"]
    form = request.app[FORMS].get(form_id)
    if form is None:
        return problem(404, "unknown_form", f"no form {form_id!r} is configured")
    submitted = await _form_fields(request)
    if isinstance(submitted, web.Response):
        return submitted
    wants_json = request.content_type == "application/json" or "json" in request.headers.get("Accept", "")
    if forms.is_bot(form, submitted):
        metrics.rejected.labels("honeypot").inc()
        return _form_done(form.redirect, wants_json, {"status": "accepted"})
    received_at = utcnow()
    try:
        event = forms.form_event(form_id, form, submitted, received_at)
        problems = validate_event(request, event.model_dump(mode="json"), received_at)
    except ValidationError as exc:
        problems = field_problems(exc)
    if isinstance(problems, list):
        metrics.rejected.labels("validation_failed").inc()
        named = forms.named_as_posted(form, problems)
        return problem(422, "validation_failed", "the form is not valid", fields=named)
    # A form resubmitted within seconds (double click) is one lead: the sender id is the content, kept
    # for the form's short window only, as the same request sent later is a new one.
    sender = "form:" + domain._digest(form_id + "|" + orjson.dumps(dict(sorted(submitted.items()))).decode())
    settings = request.app[SETTINGS]
    outcome = await accept(
        request.app[INGESTOR],
        settings,
        event,
        received_at,
        sender,
        ip_hash=client_ip_hash(request),
        window_seconds=settings.form_resubmit_seconds,
    )
    if not outcome.ok:
        return answer(request, outcome)
    return _form_done(form.redirect, wants_json, outcome.answer)


def _form_done(redirect: str | None, wants_json: bool, body: dict[str, object]) -> web.StreamResponse:
    if redirect and not wants_json:
        return web.Response(status=303, headers={"Location": redirect})
    return web.json_response(body, status=202)


def client_ip_hash(request: web.Request) -> str | None:
    """The consent proof keeps a salted hash of the client's address, never the address itself."""
    return consent.hash_ip(request.remote, request.app[SETTINGS].privacy_salt.get_secret_value())


_TOKEN_WHY = {
    "malformed": "the confirmation link is damaged or incomplete; open it from the e-mail again",
    "bad_signature": "the confirmation link was changed or was not issued by us",
    "expired": "the confirmation link has expired; sign up again to get a new one",
}


def _consent_claim(request: web.Request, token: str) -> consent_tokens.ConsentClaim | web.Response:
    """The token's claim, or the 400 (410 when expired) saying why not: a page for a browser."""
    try:
        secret = request.app[SETTINGS].consent_secret.get_secret_value()
        return consent_tokens.read_token(token, secret, utcnow())
    except consent_tokens.TokenError as exc:
        request.app[CAPTURE_METRICS].rejected.labels(f"consent_token_{exc}").inc()
        status, why = 410 if str(exc) == "expired" else 400, _TOKEN_WHY[str(exc)]
        if wants_html(request):
            return html_page("Confirmation link not valid", why[0].upper() + why[1:] + ".", status=status)
        return problem(status, f"token_{exc}", why)


async def confirm_consent_page(request: web.Request) -> web.Response:
    """A button, not an action: mail scanners follow links (GET, HEAD) and must not confirm anyone's
    consent. The token is checked already, so a bad or expired link says so before the click."""
    token = request.query.get("token", "")
    claim = _consent_claim(request, token)
    if isinstance(claim, web.Response):
        return claim
    return html_page(
        "Confirm your subscription",
        "Click the button to confirm that you want to receive our e-mails.",
        f'<form method="post" action="{html.escape(request.path, quote=True)}">'
        f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
        '<button type="submit">Confirm</button></form>',
    )


async def confirm_consent(request: web.Request) -> web.Response:
    """The page's button (the token in the form body, or in the query): records the confirmation with
    its proof. A repeat is the same record (`consent-confirm:<token id>`)."""
    settings = request.app[SETTINGS]
    posted = await _posted(request)
    if isinstance(posted, web.Response):
        return posted
    token = posted.get("token", request.query.get("token", ""))
    claim = _consent_claim(request, token)
    if isinstance(claim, web.Response):
        return claim
    record = consent.consent_confirmed(claim, token, utcnow(), ip_hash=client_ip_hash(request))
    outcome = await request.app[INGESTOR].submit(
        settings.topic(TopicName.PRIVACY), record, f"consent-confirm:{consent_tokens.token_id(token)}"
    )
    if not outcome.ok:
        return answer(request, outcome)
    if wants_html(request):
        return html_page("Subscription confirmed", "Thank you: you will receive our e-mails.")
    return web.json_response({"status": "confirmed", "lead_id": claim.lead_id})


async def withdraw_consent(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    data = parse_json(request, await request.read())
    if isinstance(data, web.Response):
        return data
    try:
        body = WithdrawIn.model_validate(data)
        lead_id, _ = domain.lead_identity(body.email, body.anonymous_id)
    except ValidationError as exc:
        return problem(422, "validation_failed", "not a withdrawal", fields=field_problems(exc))
    except ValueError as exc:
        return problem(422, "validation_failed", str(exc), fields=[_body_problem(str(exc))])
    record = consent.consent_withdrawn(
        lead_id, body.source, utcnow(), f"consent-withdrawn-{uuid.uuid4().hex}", body.text_version
    )
    outcome = await request.app[INGESTOR].submit(settings.topic(TopicName.PRIVACY), record, None)
    if not outcome.ok:
        return answer(request, outcome)
    return web.json_response({"status": "withdrawn", "lead_id": lead_id}, status=202)
