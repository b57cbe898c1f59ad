"""create_app(settings) -> StreamService: the only place nurture is wired together."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schemas.topics import TopicName
from services.nurture.agents import Nurture, install_agents
from services.nurture.mailer import Mailer, install_mailer, ledger_for
from services.nurture.metrics import nurture_metrics
from services.nurture.rules import load_rules
from services.nurture.settings import NurtureSettings
from services.privacy.guard import ErasureGuard
from services.privacy.metrics import privacy_metrics
from services.privacy.policy import load_policy
from services.runtime.smtp import SmtpTransport
from services.runtime.stream_app import StreamService


def create_app(settings: NurtureSettings) -> StreamService:
    rules = load_rules(settings.rules_file)  # fails start-up with file, key and problem
    rules = rules.with_link_lifetime(timedelta(seconds=settings.consent_token_ttl_seconds))
    service = StreamService("nurture", settings)
    app = service.app
    ledger = ledger_for(settings)
    metrics = nurture_metrics(service.metrics.registry)
    policy = load_policy(settings.privacy_file, settings.topics_file)
    privacy = privacy_metrics(service.name, service.metrics.registry)
    # bytes keys and values: faust picks the raw codec for the changelog (recovery decodes the same way)
    table: dict[str, Any] = {"partitions": settings.topic_partitions, "key_type": bytes, "value_type": bytes}
    guard = ErasureGuard(service.table("erased-leads", **table), policy.erasure_guard, privacy.dropped_stale)
    nurture = Nurture(
        service=service,
        settings=settings,
        rules=rules,
        metrics=metrics,
        ledger=ledger,
        guard=guard,
        privacy_metrics=privacy,
        guard_purge_seconds=policy.retention_sweep_interval.total_seconds(),
    )
    nurture.leads = service.table("leads", **table)
    nurture.due = service.table("due", **table)
    nurture.outbox = service.topic(TopicName.NURTURE_OUTBOX)
    topics = {
        "stage_changes": settings.topic(TopicName.STAGE_CHANGES),
        "enriched": settings.topic(TopicName.ENRICHED),
        "sales": settings.topic(TopicName.SALES_ACTIVITY),
        "privacy": settings.topic(TopicName.PRIVACY),
        "ticks": f"{app.conf.id}-ticks",
    }
    nurture.ticks = service.internal_topic(topics["ticks"])
    # one agent over every input: each lead has a single writer (services/nurture/agents.py)
    install_agents(nurture, service.raw_topic(*topics.values()), topics)
    service.reindex_when_rows_move(nurture.due, nurture.schedule.invalidate)  # rebuilt on the next tick
    if settings.mailer_enabled:
        install_mailer(service, Mailer(settings, ledger, SmtpTransport(settings), metrics))
    return service
