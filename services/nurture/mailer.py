"""The e-mail adapter: `nurture.outbox` -> SMTP (aiosmtplib), once per command id.

It runs as an agent inside the nurture worker (`NURTURE_MAILER_ENABLED=true`, the default) or on
its own with `python -m services.nurture.mailer` (then set `NURTURE_MAILER_ENABLED=false` for the
worker). Both may run at once: the Redis claim on the command id keeps each e-mail single.
Links are tracked: opens and clicks come back to capture as `email_open` / `email_click`
interactions (see `tracking_event`); the unsubscribe link becomes an `unsubscribe` interaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlencode

import aiosmtplib
import faust
import redis.asyncio as aioredis

from schemas.interaction import InteractionIn, InteractionType
from schemas.nurture import NurtureCommand
from schemas.topics import TopicName
from services.nurture.ledger import DeliveryLedger
from services.nurture.metrics import NurtureMetrics, nurture_metrics
from services.nurture.settings import NurtureSettings
from services.runtime.codec import Decoder
from services.runtime.stream_app import StreamService, run_worker

log = logging.getLogger(__name__)


class Delivery(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"
    STOPPED = "stopped"


# --- tracking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tracking:
    """Signed tracking URLs; the signature stops anyone forging opens or unsubscribes for others."""

    base_url: str
    secret: bytes

    def _sign(self, *parts: str) -> str:
        return hmac.new(self.secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def _url(self, path: str, command: NurtureCommand, **extra: str) -> str:
        params = {"c": command.event_id, "l": command.lead_id, **extra}
        params["s"] = self._sign(path, *params.values())
        return f"{self.base_url.rstrip('/')}/v1/track/{path}?{urlencode(params)}"

    def open_pixel(self, command: NurtureCommand) -> str:
        return self._url("open", command)

    def click(self, command: NurtureCommand, target: str) -> str:
        return self._url("click", command, u=target)

    def unsubscribe(self, command: NurtureCommand) -> str:
        return self._url("unsubscribe", command)

    def verify(self, path: str, params: dict[str, str]) -> bool:
        values = [v for k, v in params.items() if k != "s"]
        return hmac.compare_digest(params.get("s", ""), self._sign(path, *values))


_TRACKED = {
    "open": InteractionType.EMAIL_OPEN,
    "click": InteractionType.EMAIL_CLICK,
    "unsubscribe": InteractionType.UNSUBSCRIBE,
}


def tracking_event(kind: str, command: NurtureCommand, at: datetime, url: str | None = None) -> InteractionIn:
    """The event a tracking redirect POSTs to capture's `/v1/events` (the id makes repeats harmless)."""
    event_id = hashlib.sha256(f"{command.event_id}|{kind}|{url or ''}".encode()).hexdigest()[:32]
    properties: dict[str, str | int] = {
        "command_id": command.event_id,
        "sequence": command.sequence,
        "step": command.step,
        "template_id": command.template_id,
    }
    if url:
        properties["url"] = url
    return InteractionIn.model_validate(
        {
            "event_id": event_id,
            "type": _TRACKED[kind],
            "occurred_at": at,
            "contact": {"email": command.recipient},
            "source": {"channel": "email", "utm_source": "nurture", "utm_campaign": command.sequence},
            "properties": properties,
        }
    )


# --- the message ---------------------------------------------------------------------------------

# Long tracking URLs stay readable in headers (RFC 5322 allows 998 characters a line).
_POLICY = policy.SMTP.clone(max_line_length=998)


def build_message(command: NurtureCommand, sender: str, tracking: Tracking) -> EmailMessage:
    """A plain text + HTML e-mail with tracked links; the template id names the content."""
    name = command.personalisation.get("first_name") or "there"
    read_more = tracking.click(command, f"https://leadpipe.example/content/{command.template_id}")
    unsubscribe = tracking.unsubscribe(command)
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = command.recipient
    message["Subject"] = command.template_id.replace("-", " ").capitalize()
    message["Message-ID"] = f"<{command.event_id}@leadpipe.nurture>"
    message["X-Leadpipe-Command"] = command.event_id
    message["X-Leadpipe-Template"] = command.template_id
    message["X-Leadpipe-Send-After"] = command.send_after.isoformat()
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(f"Hi {name},\n\nRead more: {read_more}\n\nUnsubscribe: {unsubscribe}\n")
    message.add_alternative(
        f'<p>Hi {name},</p><p><a href="{read_more}">Read more</a></p>'
        f'<p><a href="{unsubscribe}">Unsubscribe</a></p>'
        f'<img src="{tracking.open_pixel(command)}" width="1" height="1" alt="">',
        subtype="html",
    )
    return message


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpTransport:
    def __init__(self, settings: NurtureSettings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self._settings
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=False,
            timeout=s.smtp_timeout,
        )


class Mailer:
    """Delivers one command at most once: withheld after a stop, skipped when already sent."""

    def __init__(
        self,
        settings: NurtureSettings,
        ledger: DeliveryLedger,
        transport: Transport,
        metrics: NurtureMetrics,
    ) -> None:
        self.settings, self.ledger, self.transport, self.metrics = settings, ledger, transport, metrics
        self.tracking = Tracking(
            settings.tracking_base_url, settings.tracking_secret.get_secret_value().encode()
        )

    async def deliver(self, command: NurtureCommand) -> Delivery:
        """Retries until the SMTP server takes the message; the outbox keeps order meanwhile."""
        delay = 0.5
        while True:
            stopped = await self.ledger.stopped_at(command.lead_id)
            if stopped is not None and stopped >= command.occurred_at.timestamp():
                self.metrics.suppressed.labels("stopped").inc()
                return Delivery.STOPPED
            if not await self.ledger.claim(command.event_id):
                self.metrics.duplicates.labels("command").inc()
                return Delivery.DUPLICATE
            try:
                await self.transport.send(build_message(command, self.settings.mail_from, self.tracking))
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self.ledger.release(command.event_id)
                self.metrics.send_failures.inc()
                log.warning("SMTP send failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.smtp_retry_max_seconds)
                continue
            await self.ledger.confirm(command.event_id)
            self.metrics.sent.labels(command.sequence).inc()
            return Delivery.SENT


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
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
    return DeliveryLedger(
        client,
        sent_ttl=settings.sent_ttl_seconds,
        stop_ttl=settings.stop_ttl_seconds,
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
