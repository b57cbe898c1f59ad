"""Wiring: the score service's topics, table, agent, timers and metrics."""

from __future__ import annotations

from typing import Any

from schemas.topics import TopicName
from services.privacy.guard import ErasureGuard
from services.privacy.metrics import privacy_metrics
from services.privacy.policy import load_policy
from services.runtime.redis_client import redis_client
from services.runtime.stream_app import StreamService
from services.score.agents import Intervals, ScoreWiring, register
from services.score.due import DueIndex
from services.score.metrics import score_metrics
from services.score.rules import RulesFile
from services.score.settings import ScoreSettings

DECAY_TOPIC = "leadpipe-score.decay-due"


def create_app(settings: ScoreSettings) -> StreamService:
    """Rules are loaded (and validated) here, so a bad rules file stops start-up with a clear error."""
    rules = RulesFile(settings.rules_file)
    service = StreamService("score", settings)
    names = {
        "enriched": settings.topic(TopicName.ENRICHED),
        "sales": settings.topic(TopicName.SALES_ACTIVITY),
        "privacy": settings.topic(TopicName.PRIVACY),
        "decay": settings.topic(DECAY_TOPIC),
    }
    channel = service.raw_topic(*names.values())
    # bytes keys and values use the raw codec; the state's JSON is (de)serialised by LeadState
    index = DueIndex()
    policy = load_policy(settings.privacy_file, settings.topics_file)
    erased = service.table(
        "erased-leads", default=None, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
    )
    redis = redis_client(settings.redis_url, 2.0)
    table = service.table(
        "lead-scores", default=None, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
    )
    privacy = privacy_metrics(service.name, service.metrics.registry)
    wiring = ScoreWiring(
        service=service,
        table=table,
        rules=rules,
        metrics=score_metrics(service.metrics.registry),
        index=index,
        decay_topic=service.internal_topic(names["decay"]),
        stage_changes=service.topic(TopicName.STAGE_CHANGES),
        privacy_topic=service.topic(TopicName.PRIVACY),
        privacy_metrics=privacy,
        redis=redis,
        guard=ErasureGuard(erased, policy.erasure_guard, privacy.dropped_stale),
        **names,
    )
    intervals = Intervals(
        decay_check=settings.decay_check_interval,
        rules_reload=settings.rules_reload_interval,
        erasure_purge=policy.retention_sweep_interval.total_seconds(),
    )
    register(wiring, channel, intervals)

    async def _close(*args: Any, **kwargs: Any) -> None:
        await redis.aclose()

    service.app.on_before_shutdown.connect(_close)
    service.reindex_when_rows_move(table, index.clear)
    return service
