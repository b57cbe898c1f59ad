"""The e-mail adapter: `nurture.outbox` -> SMTP (aiosmtplib), once per command id.

It runs inside the nurture worker (`NURTURE_MAILER_ENABLED=true`, the default) or on its own with
`python -m services.nurture.mailer` (then set `NURTURE_MAILER_ENABLED=false` for the worker), in
either case as a plain consumer of the outbox beside the faust agents (`install_mailer` says why).
Both may run at once: they share the outbox's partitions, and the Redis claim on the command id
keeps each e-mail single.
Content comes from the template of the command's template id (services/nurture/templates/). Every
link is a signed redirect through capture (`NURTURE_TRACKING_BASE_URL`, signed with
`NURTURE_TRACKING_SECRET`, which must equal capture's `CAPTURE_TRACKING_SECRET`), and an open pixel
is added: opens, clicks and unsubscribes come back as `email_open`, `email_click` and `unsubscribe`
interactions on leads.interactions (services/capture/tracking.py).

The double opt-in mail (`purpose: consent_request`) is the exception: it carries the signed link to
capture's confirmation page (`NURTURE_CONSENT_CONFIRM_URL`, signed with `NURTURE_CONSENT_SECRET`,
which must equal `CAPTURE_CONSENT_SECRET`) and nothing that tracks, since the person has not yet
agreed to marketing mail.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from functools import partial

from aiokafka import ConsumerRecord

from schemas.dead_letter import DeadLetter
from schemas.nurture import NurtureCommand
from schemas.topics import TopicName
from services.nurture.ledger import DeliveryLedger
from services.nurture.links import confirm_link
from services.nurture.metrics import NurtureMetrics, nurture_metrics
from services.nurture.settings import NurtureSettings
from services.nurture.templates import CONFIRM_LINK, EmailTemplate, TemplateLibrary, load_templates, render
from services.runtime.codec import Decoder, dead_letter, origin_of
from services.runtime.health import Flag
from services.runtime.redis_client import redis_client
from services.runtime.redis_retry import until_redis_answers
from services.runtime.send_once import Delivery
from services.runtime.side_consumer import consume_forever
from services.runtime.smtp import SmtpTransport, Transport, mail_once
from services.runtime.stream_app import StreamService, run_worker
from services.runtime.tracking_tokens import TokenKind, TrackingClaim, TrackingTokens

log = logging.getLogger(__name__)

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
    _headers(message, command, sender, content.subject)
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


def _headers(message: EmailMessage, command: NurtureCommand, sender: str, subject: str) -> None:
    message["From"] = sender
    message["To"] = command.recipient
    message["Subject"] = subject
    message["Message-ID"] = f"<{command.event_id}@leadpipe.nurture>"
    message["X-Leadpipe-Command"] = command.event_id
    message["X-Leadpipe-Template"] = command.template_id
    message["X-Leadpipe-Send-After"] = command.send_after.isoformat()


def build_confirmation(
    command: NurtureCommand, sender: str, confirm_url: str, template: EmailTemplate
) -> EmailMessage:
    """The double opt-in mail: the template's `CONFIRM_LINK`s lead to `confirm_url` (a template
    without one gets the link as a last line, so the mail always asks for what it is for); other
    links go where they say, untracked."""
    content = render(
        template, command.personalisation, lambda url: confirm_url if url == CONFIRM_LINK else url
    )
    text, markup = content.text, content.html
    if confirm_url not in text:
        text += f"\nConfirm: {confirm_url}\n"
        markup += f'<p><a href="{html.escape(confirm_url)}">Confirm</a></p>'
    message = EmailMessage(policy=_POLICY)
    _headers(message, command, sender, content.subject)
    message.set_content(text)
    message.add_alternative(f"<!doctype html><html><body>{markup}</body></html>", subtype="html")
    return message


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
        if command.purpose == "consent_request":
            return build_confirmation(command, self.settings.mail_from, self.confirm_url(command), template)
        return build_message(command, self.settings.mail_from, self.links, template)

    def confirm_url(self, command: NurtureCommand) -> str:
        return confirm_link(self.settings, command)

    async def deliver(self, command: NurtureCommand) -> tuple[Delivery, str | None]:
        """Retries until the SMTP server takes the message, the outbox keeping order meanwhile, or
        refuses it for good (REFUSED, with the server's answer: the caller dead-letters it)."""

        async def stopped() -> bool:
            at = await until_redis_answers(partial(self.ledger.stopped_at, command.lead_id), "stop marker")
            return at is not None and at >= command.occurred_at.timestamp()

        errors: list[BaseException] = []

        def failed(exc: BaseException) -> None:
            self.metrics.send_failures.inc()
            errors.append(exc)

        delivery = await mail_once(
            self.ledger,
            command.event_id,
            self.transport,
            partial(self.message, command),
            retry_max_seconds=self.settings.smtp_retry_max_seconds,
            stopped=stopped,
            failed=failed,
        )
        if delivery is Delivery.STOPPED:
            self.metrics.suppressed.labels("stopped").inc()
        elif delivery is Delivery.DUPLICATE:
            self.metrics.duplicates.labels("command").inc()
        elif delivery is Delivery.REFUSED:
            self.metrics.suppressed.labels("refused").inc()
            return delivery, f"{type(errors[-1]).__name__}: {errors[-1]}"
        else:
            self.metrics.sent.labels(command.sequence).inc()
        return delivery, None


def refused_letter(record: ConsumerRecord[bytes, bytes], service: str, refusal: str) -> DeadLetter:
    """A command the SMTP server refused for good (an address it rejects, SMTPUTF8 it lacks)."""
    detail = f"the mail server refused it for good: {refusal}"
    return dead_letter(service, origin_of(record), record.value, "smtp_refused", detail)


def install_mailer(service: StreamService, mailer: Mailer) -> None:
    """Deliver the outbox from a service (the nurture worker or the stand-alone mailer).

    Why a plain consumer beside the agents and not a faust agent: faust waits without a limit for
    every event an agent has begun before it rebalances or stops, and a mail waits while the SMTP
    server is down. As an agent, the mailer held every rebalance of the nurture group for as long
    as the server was away (a second worker could not join for the minute measured), and with it
    nurture's enrolments and schedules (services/runtime/side_consumer.py)."""
    settings = mailer.settings
    decoder: Decoder[NurtureCommand] = Decoder(NurtureCommand, service.name)

    async def deliver(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            command = await service.decode_record(decoder, record)
            if command is None:
                continue
            _, refusal = await mailer.deliver(command)
            if refusal is not None:  # kept for an operator; the outbox moves on
                await service.dead_letter(refused_letter(record, service.name, refusal))

    running = Flag()
    service.health.add("mailer", running)

    async def consume() -> None:  # a faust app task: cancelled when the worker stops
        group = f"leadpipe-nurture{settings.topic_suffix}-mailer"
        outbox = settings.topic(TopicName.NURTURE_OUTBOX)
        await consume_forever(settings, outbox, group, deliver, running=running, lags=service.side_lags)

    service.app.task(consume)


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
    """The stand-alone mailer, its own web port (`NURTURE_WEB_PORT`); it shares the outbox's
    partitions with the mailers of nurture workers that have one (one consumer group)."""
    service = StreamService("nurture-mailer", settings, batched=False)
    # No agents: faust's producer (dead letters) and web server (health, metrics) without its consumer.
    service.app.producer_only = True
    del service.health.checks["consumer_group"]
    ledger = ledger_for(settings)
    mailer = Mailer(settings, ledger, SmtpTransport(settings), nurture_metrics(service.metrics.registry))
    install_mailer(service, mailer)
    return service


if __name__ == "__main__":
    run_worker(create_mailer_app(NurtureSettings()))
