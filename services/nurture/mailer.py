"""The e-mail adapter: `nurture.outbox` -> SMTP (aiosmtplib), once per command id.

It runs as an agent inside the nurture worker (`NURTURE_MAILER_ENABLED=true`, the default) or on
its own with `python -m services.nurture.mailer` (then set `NURTURE_MAILER_ENABLED=false` for the
worker). Both may run at once: the Redis claim on the command id keeps each e-mail single.
Content comes from the template of the command's template id (services/nurture/templates/). Every
link is a signed redirect through capture (`NURTURE_TRACKING_BASE_URL`, signed with
`NURTURE_TRACKING_SECRET`, which must equal capture's `CAPTURE_TRACKING_SECRET`), and an open pixel
is added: opens, clicks and unsubscribes come back as `email_open`, `email_click` and `unsubscribe`
interactions on leads.interactions (services/capture/tracking.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from enum import StrEnum
from functools import partial
from typing import Protocol

import aiosmtplib
import faust
from redis.exceptions import RedisError

from schemas.nurture import NurtureCommand
from schemas.topics import TopicName
from services.nurture.ledger import Claim, DeliveryLedger
from services.nurture.metrics import NurtureMetrics, nurture_metrics
from services.nurture.settings import NurtureSettings
from services.nurture.templates import EmailTemplate, TemplateLibrary, load_templates, render
from services.runtime.codec import Decoder
from services.runtime.redis_client import redis_client
from services.runtime.redis_retry import until_redis_answers
from services.runtime.stream_app import StreamService, run_worker
from services.runtime.tracking_tokens import TokenKind, TrackingClaim, TrackingTokens

log = logging.getLogger(__name__)

BUSY_POLL_SECONDS = 0.5  # how often a command another worker holds is looked at again


class Delivery(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"
    STOPPED = "stopped"


# --- tracking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingLinks:
    """Signed links to capture's tracking endpoints (services/capture/tracking.py)."""

    base_url: str
    tokens: TrackingTokens

    def _url(self, path: str, command: NurtureCommand, kind: TokenKind, target: str | None = None) -> str:
        claim = TrackingClaim(
            kind=kind,
            lead_id=command.lead_id,
            message_id=command.event_id,
            sequence=command.sequence,
            step=command.step,
            template_id=command.template_id,
            # When the mail was due: the same command always gets the same links, even after a retry.
            issued_at=int(command.send_after.timestamp()),
            url=target,
        )
        return f"{self.base_url.rstrip('/')}/t/{path}/{self.tokens.sign(claim)}"

    def open_pixel(self, command: NurtureCommand) -> str:
        return self._url("o", command, TokenKind.OPEN)

    def click(self, command: NurtureCommand, target: str) -> str:
        return self._url("c", command, TokenKind.CLICK, target)

    def unsubscribe(self, command: NurtureCommand) -> str:
        return self._url("u", command, TokenKind.UNSUBSCRIBE)


# --- the message ---------------------------------------------------------------------------------

# Long tracking URLs stay readable in headers (RFC 5322 allows 998 characters a line).
_POLICY = policy.SMTP.clone(max_line_length=998)


def build_message(
    command: NurtureCommand, sender: str, links: TrackingLinks, template: EmailTemplate
) -> EmailMessage:
    """A plain text + HTML e-mail: every link tracked, an open pixel, and one-click unsubscribe."""
    content = render(template, command.personalisation, lambda url: links.click(command, url))
    unsubscribe = links.unsubscribe(command)
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = command.recipient
    message["Subject"] = content.subject
    message["Message-ID"] = f"<{command.event_id}@leadpipe.nurture>"
    message["X-Leadpipe-Command"] = command.event_id
    message["X-Leadpipe-Template"] = command.template_id
    message["X-Leadpipe-Send-After"] = command.send_after.isoformat()
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    footer = "You receive this because you asked to hear from us."
    message.set_content(f"{content.text}\n--\n{footer}\nUnsubscribe: {unsubscribe}\n")
    pixel = html.escape(links.open_pixel(command))
    message.add_alternative(
        f'<!doctype html><html><body>{content.html}<hr><p style="font-size:12px;color:#666">{footer} '
        f'<a href="{html.escape(unsubscribe)}">Unsubscribe</a></p>'
        f'<img src="{pixel}" width="1" height="1" alt="" style="display:block;border:0"></body></html>',
        subtype="html",
    )
    return message


Accepted = Callable[[], Awaitable[None]]


class Transport(Protocol):
    async def send(self, message: EmailMessage, accepted: Accepted) -> None:
        """Send `message`; await `accepted` as soon as the server has taken it (before QUIT)."""


class SmtpTransport:
    def __init__(self, settings: NurtureSettings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage, accepted: Accepted) -> None:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=False,
            timeout=s.smtp_timeout,
        )
        async with client:  # QUIT on the way out; an error in QUIT closes the connection instead
            await client.send_message(message)
            # The server's reply to the end of DATA is its acceptance: record it now, not after
            # QUIT, so a crash in between cannot make the replayed command send the mail again.
            await accepted()


class Mailer:
    """Delivers one command at most once: withheld after a stop, skipped when already sent."""

    def __init__(
        self,
        settings: NurtureSettings,
        ledger: DeliveryLedger,
        transport: Transport,
        metrics: NurtureMetrics,
        templates: TemplateLibrary | None = None,
    ) -> None:
        self.settings, self.ledger, self.transport, self.metrics = settings, ledger, transport, metrics
        self.templates = templates or load_templates()
        self.links = TrackingLinks(
            settings.tracking_base_url, TrackingTokens(settings.tracking_secret.get_secret_value().encode())
        )

    def message(self, command: NurtureCommand) -> EmailMessage:
        template = self.templates.get(command.template_id)
        if template is None:
            log.warning("no template %r; sending the default one", command.template_id)
            template = self.templates.get_or_default(command.template_id)
        return build_message(command, self.settings.mail_from, self.links, template)

    async def deliver(self, command: NurtureCommand) -> Delivery:
        """Retries until the SMTP server takes the message; the outbox keeps order meanwhile."""
        delay = 0.5
        command_id = command.event_id
        waiting = False
        while True:
            stopped = await until_redis_answers(
                partial(self.ledger.stopped_at, command.lead_id), "stop marker"
            )
            if stopped is not None and stopped >= command.occurred_at.timestamp():
                self.metrics.suppressed.labels("stopped").inc()
                return Delivery.STOPPED
            claim = await until_redis_answers(partial(self.ledger.claim, command_id), "delivery claim")
            if claim is Claim.SENT:
                self.metrics.duplicates.labels("command").inc()
                return Delivery.DUPLICATE
            if claim is Claim.BUSY:  # wait for the other worker to confirm, or for its lease to end
                if not waiting:
                    waiting = True
                    log.info("command %s is claimed by another mailer; waiting for it", command_id)
                await asyncio.sleep(BUSY_POLL_SECONDS)
                continue
            confirmed = False

            async def accepted() -> None:
                nonlocal confirmed
                await until_redis_answers(partial(self.ledger.confirm, command_id), "delivery confirmation")
                confirmed = True

            try:
                async with self._claim_held(command_id):
                    await self.transport.send(self.message(command), accepted)
            except (aiosmtplib.SMTPException, OSError) as exc:
                if confirmed:  # taken by the server; only the goodbye failed
                    log.info("SMTP QUIT failed after the server accepted the mail (%s)", type(exc).__name__)
                    self.metrics.sent.labels(command.sequence).inc()
                    return Delivery.SENT
                await until_redis_answers(partial(self.ledger.release, command_id), "delivery claim release")
                self.metrics.send_failures.inc()
                log.warning("SMTP send failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.smtp_retry_max_seconds)
                continue
            self.metrics.sent.labels(command.sequence).inc()
            return Delivery.SENT

    @contextlib.asynccontextmanager
    async def _claim_held(self, command_id: str) -> AsyncIterator[None]:
        """Renew the claim every third of a lease while an attempt runs: the lease only has to
        outlast a crash, not the slowest SMTP server (ledger docstring)."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.ledger.lease_seconds / 3)
                try:
                    if not await self.ledger.renew(command_id):
                        log.warning("lost the claim on %s mid-send; another mailer may send it", command_id)
                        return
                except (RedisError, OSError) as exc:  # the lease may lapse: at worst a second e-mail
                    log.warning("could not renew the claim on %s (%s)", command_id, type(exc).__name__)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing


def install_mailer(service: StreamService, mailer: Mailer) -> None:
    """Add the outbox agent to a service (the nurture worker or the stand-alone mailer)."""
    decoder: Decoder[NurtureCommand] = Decoder(NurtureCommand, service.name)

    @service.app.agent(service.topic(TopicName.NURTURE_OUTBOX), name=f"{service.name}-mailer")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            command = await service.decode(decoder, event)
            if command is not None:
                await mailer.deliver(command)


def ledger_for(settings: NurtureSettings) -> DeliveryLedger:
    client = redis_client(settings.redis_url, settings.redis_timeout)
    return DeliveryLedger(
        client,
        sent_ttl=settings.sent_ttl_seconds,
        stop_ttl=settings.stop_ttl_seconds,
        claim_ttl=settings.delivery_lease_seconds,
        prefix=settings.topic_suffix,
    )


def create_mailer_app(settings: NurtureSettings) -> StreamService:
    """The stand-alone mailer: its own consumer group, its own web port (`NURTURE_WEB_PORT`)."""
    service = StreamService("nurture-mailer", settings)
    ledger = ledger_for(settings)
    mailer = Mailer(settings, ledger, SmtpTransport(settings), nurture_metrics(service.metrics.registry))
    install_mailer(service, mailer)
    return service


if __name__ == "__main__":
    run_worker(create_mailer_app(NurtureSettings()))
