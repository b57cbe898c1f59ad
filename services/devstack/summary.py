"""A live count of what flows through the pipeline, read from the topics themselves."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from schemas.topics import TopicName

WATCHED = (
    TopicName.INTERACTIONS,
    TopicName.ENRICHED,
    TopicName.STAGE_CHANGES,
    TopicName.HANDOFFS,
    TopicName.SLA,
    TopicName.NURTURE_OUTBOX,
    TopicName.DLQ,
)


@dataclass
class PipelineSummary:
    per_topic: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    teams: Counter[str] = field(default_factory=Counter)
    posted: int = 0
    refused: int = 0
    confirmed: Callable[[], int] = lambda: 0  # consents the demo's people confirmed (demo_people.py)

    def record(self, topic: str, value: bytes | None) -> None:
        self.per_topic[topic] += 1
        if not value:
            return
        if topic == TopicName.STAGE_CHANGES:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.stages[json.loads(value)["to_stage"]] += 1
        elif topic == TopicName.HANDOFFS:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.teams[json.loads(value)["assignee"]["team"]] += 1

    def line(self) -> str:
        def count(topic: TopicName) -> int:
            return self.per_topic[str(topic)]

        stages = ", ".join(f"{stage} {n}" for stage, n in self.stages.most_common(4))
        parts = [
            f"posted {self.posted}" + (f" (refused {self.refused})" if self.refused else ""),
            f"interactions {count(TopicName.INTERACTIONS)}",
            f"enriched {count(TopicName.ENRICHED)}",
            f"stage changes {count(TopicName.STAGE_CHANGES)}" + (f" ({stages})" if stages else ""),
            f"handoffs {count(TopicName.HANDOFFS)}",
            f"sla {count(TopicName.SLA)}",
            f"outbox {count(TopicName.NURTURE_OUTBOX)}"
            + (f" (consents confirmed {self.confirmed()})" if self.confirmed() else ""),
            f"dlq {count(TopicName.DLQ)}",
        ]
        return " | ".join(parts)


async def follow(
    bootstrap_servers: str,
    summary: PipelineSummary,
    stopping: asyncio.Event,
    also: Callable[[str, bytes | None], None] | None = None,
) -> None:
    """Count every record on the watched topics until `stopping` is set; `also` sees each too."""
    consumer = AIOKafkaConsumer(
        *[str(t) for t in WATCHED],
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    summary.record(tp.topic, record.value)
                    if also is not None:
                        also(tp.topic, record.value)
    finally:
        await consumer.stop()
