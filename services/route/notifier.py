"""SLA notices by e-mail: `leads.sla` -> SMTP, once per breach and reminder (`ROUTE_NOTIFY_ENABLED`).

Route names who should hear of a breach on every SLA event (`notify`: the team lead, then the
escalation list), and whom to remind of a deadline coming (`due_soon`: the rep, or the team lead
while the lead is queued); this is what tells them. A reminder whose lead was contacted, closed or
handed on since, or whose deadline passed (an SMTP outage held it up), is not sent. It reads
leads.sla with its own consumer group in a plain consumer beside the faust agents
(services/runtime/side_consumer.py), so an SMTP server that is down delays the notices and nothing
else: hand-offs and the SLA clock go on. Each notice is claimed in Redis before it is sent and
confirmed when the server took it (services/runtime/send_once.py), so a replay does not send it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from email import policy
from email.message import EmailMessage
from functools import partial

from aiokafka import ConsumerRecord

from schemas.base import utcnow
from schemas.handoff import SlaEvent
from schemas.topics import TopicName
from services.route.config import RoutingConfig
from services.route.metrics import RouteMetrics
from services.route.notices import (
    Notice,
    breach_notice,
    gives_notice,
    is_reminder,
    one_line,
    reminder_notice,
    reminder_stale,
)
from services.route.settings import RouteSettings
from services.route.store import RedisStore
from services.runtime.redis_retry import until_redis_answers
from services.runtime.send_once import Delivery, SendClaims
from services.runtime.side_consumer import consume_forever
from services.runtime.smtp import Transport, mail_once

log = logging.getLogger(__name__)

Decode = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[SlaEvent | None]]


def notice_message(notice: Notice, sender: str) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = ", ".join(notice.to)
    if notice.cc:
        message["Cc"] = ", ".join(notice.cc)
    message["Subject"] = notice.subject
    message["Message-ID"] = f"<{notice.message_id}@leadpipe.route>"
    message["X-Leadpipe-Lead"] = one_line(notice.lead_id)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to it
    message.set_content(notice.text)
    return message


class SlaNotifier:
    def __init__(
        self,
        settings: RouteSettings,
        *,
        decode: Decode,
        config: RoutingConfig,
        store: RedisStore,
        claims: SendClaims,
        transport: Transport,
        metrics: RouteMetrics,
    ) -> None:
        self.settings, self.decode, self.config, self.store = settings, decode, config, store
        self.claims, self.transport, self.metrics = claims, transport, metrics

    async def handle(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """One fetch of leads.sla, in order; a notice waits until the server took it, and one that
        cannot be built is skipped (`notify`), as the consumer would start again at it for ever."""
        for record in records:
            event = await self.decode(record)  # an unreadable one is dead-lettered
            if event is not None and (gives_notice(event) or is_reminder(event)):
                await self.notify(event)

    async def notify(self, event: SlaEvent) -> Delivery | None:
        """Mail the notice of a breach, or the reminder of a `due_soon` event that is not stale."""
        state = await until_redis_answers(partial(self.store.state, event.lead_id), "notice lead state")
        now = utcnow()
        if is_reminder(event) and (stale := reminder_stale(event, state, now)) is not None:
            log.info("SLA reminder %s of lead %s not sent: %s", event.event_id, event.lead_id, stale)
            self.metrics.notices.labels("stale").inc()
            return None
        try:
            lead_url = self.settings.notify_lead_url
            notice = (
                reminder_notice(event, state, self.config, now, lead_url)
                if is_reminder(event)
                else breach_notice(event, state, self.config, lead_url)
            )
            message = None if notice is None else notice_message(notice, self.settings.notify_from)
        except (ValueError, TypeError, LookupError):  # an address no header can carry, say
            log.exception(
                "SLA notice for %s %s of lead %s cannot be built: skipped",
                event.kind.value,
                event.event_id,
                event.lead_id,
            )
            self.metrics.notices.labels("unbuildable").inc()
            return None
        if notice is None or message is None:
            return None
        # A rep without an email is a normal config for reminders (sales tools read leads.sla too);
        # an entry of a breach without one is a rep since removed from the file.
        level = logging.INFO if is_reminder(event) else logging.WARNING
        for entry in notice.unaddressed:
            log.log(
                level,
                "SLA notice for %s: no address for %r (not in config/routing.yaml)",
                event.lead_id,
                entry,
            )
        if not notice.to:
            self.metrics.notices.labels("unaddressed").inc()
            return None
        delivery = await mail_once(
            self.claims,
            notice.message_id,
            self.transport,
            lambda: message,
            retry_max_seconds=self.settings.smtp_retry_max_seconds,
            failed=lambda _: self.metrics.notice_failures.inc(),
        )
        self.metrics.notices.labels(delivery.value).inc()
        return delivery

    async def run(self, lags: dict[tuple[str, int], int]) -> None:
        """Consume leads.sla until cancelled, reporting its lag into `lags`."""
        s = self.settings
        group = f"leadpipe-route{s.topic_suffix}-notices"
        await consume_forever(s, s.topic(TopicName.SLA), group, self.handle, lags=lags)
