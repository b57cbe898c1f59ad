"""E-mail tracking links: opens, clicks and unsubscribes come back as interactions on leads.interactions.

nurture's mailer signs every link (services/runtime/tracking_tokens.py); these public endpoints
verify the signature and publish through the ingestor, waiting for the broker's acknowledgement:

    GET  /t/o/{token}  the open pixel: always a 1x1 GIF, so a damaged link never breaks a mail client
    GET  /t/c/{token}  a click: publish, then 302 to the target the token carries (never another one)
    GET  /t/u/{token}  the unsubscribe page; POST (the page's button, or RFC 8058 one-click) unsubscribes

Repeats are one event: the event id is derived from the lead, the message and (for a click) the
target, so a second open of a mail, or a second click on the same link, is deduplicated by capture
within its dedupe window and by the consumers' event-id checks after it. Links older than
`CAPTURE_TRACKING_MAX_AGE_SECONDS` are not counted (a click on one still redirects, the target being
signed); an unsubscribe is honoured at any age. HEAD requests (link scanners) publish nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
from datetime import UTC, datetime

from aiohttp import web

from schemas.base import utcnow
from schemas.interaction import IdentityKind, Interaction, InteractionType, Source
from schemas.topics import TopicName
from services.capture.ingest import Outcome, Status
from services.capture.keys import CAPTURE_METRICS, INGESTOR, SETTINGS
from services.capture.responses import NO_CACHE, html_page, problem
from services.capture.routes import unavailable
from services.runtime.tracking_tokens import TokenError, TokenKind, TrackingClaim, TrackingTokens

log = logging.getLogger(__name__)

# The smallest transparent GIF (1x1, one transparent colour).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
TOKENS = web.AppKey("tracking_tokens", TrackingTokens)

_TYPES = {
    TokenKind.OPEN: InteractionType.EMAIL_OPEN,
    TokenKind.CLICK: InteractionType.EMAIL_CLICK,
    TokenKind.UNSUBSCRIBE: InteractionType.UNSUBSCRIBE,
}
_WHY = {
    "malformed": "the link is damaged or incomplete",
    "bad_signature": "the link was changed or was not issued by us",
    "wrong_kind": "the link is not meant for this address",
}


def add_routes(app: web.Application) -> None:
    app[TOKENS] = TrackingTokens(app[SETTINGS].tracking_secret.get_secret_value().encode())
    app.router.add_get("/t/o/{token}", open_pixel)
    app.router.add_get("/t/c/{token}", click)
    app.router.add_get("/t/u/{token}", unsubscribe_page)
    app.router.add_post("/t/u/{token}", unsubscribe)


# --- pure: what a verified link publishes ---------------------------------------------------------


def tracking_event_id(claim: TrackingClaim, now: datetime) -> str:
    """One event per lead, message, kind and (for clicks) target: repeats share the id. An
    unsubscribe's id also names the minute it came in: the page's POST and the mail client's
    one-click POST are one event (two across a minute's turn, which unsubscribe twice). With one
    id for ever, a lead that signed up again and unsubscribed through the same old mail later sent
    a repeat that enrich and nurture dropped: it stayed subscribed, while this page said otherwise."""
    text = f"{claim.kind.value}|{claim.lead_id}|{claim.message_id}|{claim.url or ''}"
    if claim.kind is TokenKind.UNSUBSCRIBE:
        text += f"|{now.astimezone(UTC):%Y-%m-%dT%H:%M}"
    return "trk-" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def tracking_interaction(claim: TrackingClaim, now: datetime) -> Interaction:
    """The interaction of a followed link: keyed by the signed lead id; the link carries no contact data."""
    properties: dict[str, str | int] = {
        "command_id": claim.message_id,
        "sequence": claim.sequence,
        "step": claim.step,
        "template_id": claim.template_id,
    }
    if claim.url is not None:
        properties["url"] = claim.url
    return Interaction(
        event_id=tracking_event_id(claim, now),
        occurred_at=now,
        lead_id=claim.lead_id,
        type=_TYPES[claim.kind],
        identity=IdentityKind.EMAIL,  # the lead was reached at its e-mail address
        source=Source(channel="email", utm_source="nurture", utm_medium="email", utm_campaign=claim.sequence),
        properties=dict(properties),
        received_at=now,
    )


# --- handlers -------------------------------------------------------------------------------------


def _claim(request: web.Request, kind: TokenKind) -> TrackingClaim | TokenError:
    try:
        claim = request.app[TOKENS].verify(request.match_info["token"])
    except TokenError as exc:
        error = exc
    else:
        if claim.kind is kind:
            return claim
        error = TokenError("wrong_kind")
    request.app[CAPTURE_METRICS].rejected.labels(f"tracking_token_{error}").inc()
    return error


def _counts(request: web.Request, claim: TrackingClaim, now: datetime) -> bool:
    """Whether following this link is an event: a real GET of a link young enough to count."""
    if request.method != "GET":
        return False
    if claim.kind is not TokenKind.UNSUBSCRIBE and claim.is_expired(
        now.timestamp(), request.app[SETTINGS].tracking_max_age_seconds
    ):
        request.app[CAPTURE_METRICS].rejected.labels("tracking_token_expired").inc()
        return False
    return True


async def _publish(request: web.Request, claim: TrackingClaim, now: datetime) -> Outcome:
    record = tracking_interaction(claim, now)
    settings = request.app[SETTINGS]
    return await request.app[INGESTOR].submit(
        settings.topic(TopicName.INTERACTIONS), record, f"track:{record.event_id}"
    )


async def open_pixel(request: web.Request) -> web.Response:
    """Always the pixel: a bad link only goes uncounted (and a broker outage only loses the open)."""
    claim = _claim(request, TokenKind.OPEN)
    now = utcnow()
    if isinstance(claim, TrackingClaim) and _counts(request, claim, now):
        await _publish(request, claim, now)
    return web.Response(body=PIXEL, content_type="image/gif", headers=NO_CACHE)


async def click(request: web.Request) -> web.Response:
    """Publish, then redirect; the reader still gets the page when the broker does not acknowledge."""
    claim = _claim(request, TokenKind.CLICK)
    if isinstance(claim, TokenError):
        return problem(400, f"token_{claim}", _WHY[str(claim)])
    if claim.url is None:  # a click claim always carries its target; never redirect elsewhere
        return problem(400, "token_malformed", _WHY["malformed"])
    now = utcnow()
    if _counts(request, claim, now):
        await _publish(request, claim, now)
    return web.Response(status=302, headers={"Location": claim.url, **NO_CACHE})


async def unsubscribe_page(request: web.Request) -> web.Response:
    """A button, not an action: link scanners that follow every link must not unsubscribe anyone."""
    claim = _claim(request, TokenKind.UNSUBSCRIBE)
    if isinstance(claim, TokenError):
        return problem(400, f"token_{claim}", _WHY[str(claim)])
    action = html.escape(request.path, quote=True)
    return html_page(
        "Unsubscribe",
        "Click the button to stop receiving these e-mails.",
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """The page's button or a mail provider's one-click POST (RFC 8058); any body is accepted."""
    claim = _claim(request, TokenKind.UNSUBSCRIBE)
    if isinstance(claim, TokenError):
        return problem(400, f"token_{claim}", _WHY[str(claim)])
    outcome = await _publish(request, claim, utcnow())
    if outcome.status in (Status.UNAVAILABLE, Status.IN_FLIGHT):
        return unavailable(request)  # not recorded: the sender (or the reader) must retry
    return html_page("Unsubscribed", "You will not receive these e-mails any more.")
