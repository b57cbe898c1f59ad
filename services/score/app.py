"""Wiring: the score service's topics, table, agent, timers and metrics."""

from __future__ import annotations

from typing import Any

from schemas.topics import TopicName
from services.runtime.stream_app import StreamService
from services.score.agents import ScoreWiring, register
from services.score.due import DueIndex
from services.score.metrics import score_metrics
from services.score.recovery_tail import RecoveryTail
from services.score.rules import RulesFile
from services.score.settings import ScoreSettings

DECAY_TOPIC = "leadpipe-score.decay-due"


def create_app(settings: ScoreSettings) -> StreamService:
    """Rules are loaded (and validated) here, so a bad rules file stops start-up with a clear error."""
    rules = RulesFile(settings.rules_file)
    service = StreamService("score", settings)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.topic_partitions,
    }
    names = {
        "enriched": settings.topic(TopicName.ENRICHED),
        "sales": settings.topic(TopicName.SALES_ACTIVITY),
        "privacy": settings.topic(TopicName.PRIVACY),
        "decay": settings.topic(DECAY_TOPIC),
    }
    channel = service.app.topic(*names.values(), **raw)
    # bytes keys and values use the raw codec; the state's JSON is (de)serialised by LeadState
    index = DueIndex()
    tail = RecoveryTail(service.app, on_applied=index.clear)
    table = service.app.Table(
        "lead-scores",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        on_changelog_event=tail.on_changelog_event,
    )
    tail.table = table
    wiring = ScoreWiring(
        service=service,
        table=table,
        rules=rules,
        metrics=score_metrics(service.metrics.registry),
        index=index,
        tail=tail,
        decay_topic=service.app.topic(names["decay"], **raw),
        stage_changes=service.topic(TopicName.STAGE_CHANGES),
        **names,
    )
    register(wiring, channel, settings.decay_check_interval, settings.rules_reload_interval)

    async def _rebalanced(*args: Any, **kwargs: Any) -> None:
        index.clear()
        tail.rebalanced()

    async def _recovered(*args: Any, **kwargs: Any) -> None:
        index.clear()
        tail.recovered()

    service.app.on_rebalance_complete.connect(_rebalanced)
    table.on_recover(_recovered)
    return service
