"""The decay index rebuilt while a batch is committing keeps the batch's leads (real broker).

A rebuild (start-up, rebalance) refills the index from the table, which holds committed states only.
The test makes it happen at the worst moment, deterministically: the first commit that carries
stage changes stops before its acknowledgements are awaited, clears the index as a rebalance does
(`reindex_when_rows_move`) and waits until the worker's own decay timer has rebuilt it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import ConsumerRecord

from schemas.stage import StageChange
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.batch import Outbox
from services.runtime.stream_app import StreamService
from services.runtime.table_rows import ROWS_PER_SLICE
from services.runtime.topics import ensure_pipeline_topics
from services.score import app as score_app
from services.score.due import DueIndex
from services.score.rules import DEFAULT_RULES_FILE
from services.score.settings import ScoreSettings
from services.score.state import LeadState
from tests.eventually import eventually, stopped
from tests.kafka import consume_until, produce
from tests.score_worker import recorded_indexes
from tests.unit.test_score_helpers import enriched, vp_profile

pytestmark = pytest.mark.integration


@dataclass
class Worker:
    service: StreamService
    index: DueIndex
    rebuilt_during_commit: list[str]  # the stage-change topic, once the forced rebuild happened

    def stored(self, lead_id: str) -> LeadState | None:
        table = next(t for t in self.service.tables if t.name == "lead-scores")
        raw = table.get(lead_id.encode())
        return None if raw is None else LeadState.loads(raw)


def rules_file(tmp_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    data.update(changes)
    path = tmp_path / "scoring.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
async def start(
    broker: EmbeddedBroker, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[Path], Any]]:
    """Start a score worker whose first commit with stage changes waits for an index rebuild."""
    services: list[StreamService] = []

    async def starting(rules: Path) -> Worker:
        indexes = recorded_indexes(monkeypatch)
        settings = ScoreSettings(
            broker_url=broker.url,
            topic_suffix=suffix,
            web_port=free_port(),
            rules_file=rules,
            decay_check_interval=0.05,
        )
        await ensure_pipeline_topics(settings)
        service = score_app.create_app(settings)
        worker = Worker(service, indexes[0], [])
        out = settings.topic(TopicName.STAGE_CHANGES)
        flush = Outbox.flush

        async def rebuilt_first(outbox: Outbox) -> None:
            pending = getattr(outbox, "_pending", [])
            if not worker.rebuilt_during_commit and any(topic == out for topic, _ in pending):
                worker.rebuilt_during_commit.append(out)
                worker.index.clear()  # what a rebalance does, here while the batch commits
                await eventually(lambda: not worker.index.needs_rebuild, within=10)  # the timer's rebuild
            await flush(outbox)

        monkeypatch.setattr(Outbox, "flush", rebuilt_first)
        await service.app.start()
        services.append(service)
        return worker

    yield starting
    for service in services:
        await stopped(service)


def changes(records: list[ConsumerRecord[bytes, bytes]]) -> list[StageChange]:
    return [StageChange.model_validate_json(r.value) for r in records]


async def test_a_rebuild_during_the_commit_keeps_the_batch_leads_due(
    start: Callable[[Path], Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    worker: Worker = await start(rules_file(tmp_path))  # a demo request keeps a lead hot for 3 days
    settings = worker.service.settings
    lead = "e-reindex-1"
    demo = enriched("demo_request", datetime.now(UTC), event_id="d1", profile=vp_profile(lead), lead_id=lead)
    await produce(
        broker.bootstrap_servers,
        settings.topic(TopicName.ENRICHED),
        [(lead.encode(), demo.model_dump_json().encode())],
    )
    await eventually(lambda: worker.stored(lead) is not None, within=30)
    assert worker.rebuilt_during_commit  # the rebuild did happen during this lead's commit
    state = worker.stored(lead)
    assert state is not None and state.next_due is not None
    await asyncio.sleep(0.5)  # the commit's last steps, and many timer ticks
    assert worker.index.get(lead) == state.next_due, "the lead dropped out of the decay index"


async def test_a_lead_made_hot_while_the_index_is_rebuilt_still_cools(
    start: Callable[[Path], Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """End to end: hot for one second, half-life two seconds; the lead cools within seconds."""
    fast = {"half_life": "PT2S", "hand_raisers": {"hot_for": "PT1S"}}
    worker: Worker = await start(rules_file(tmp_path, **fast))
    settings = worker.service.settings
    lead = "e-reindex-2"
    demo = enriched("demo_request", datetime.now(UTC), event_id="d1", profile=vp_profile(lead), lead_id=lead)
    bootstrap = broker.bootstrap_servers
    await produce(
        bootstrap, settings.topic(TopicName.ENRICHED), [(lead.encode(), demo.model_dump_json().encode())]
    )

    def cooled(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return any(c.kind.value == "temperature" and c.from_stage == "hot" for c in changes(records))

    got = await consume_until(bootstrap, settings.topic(TopicName.STAGE_CHANGES), cooled, within=15)
    assert worker.rebuilt_during_commit
    moved = [
        (c.from_stage, c.to_stage, c.trigger.type) for c in changes(got) if c.kind.value == "temperature"
    ]
    assert ("cold", "hot", "demo_request") in moved
    assert cooled(got), f"still hot 15 s after a one-second hand-raise: {moved}"


async def test_the_index_rebuild_gives_the_event_loop_turns_while_it_reads_the_leads(
    start: Callable[[Path], Any], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """1M leads read in one go held the loop for 25 s: no hand-offs, no health answers. With more
    leads than one slice (services/runtime/table_rows.py), other tasks run half-way through."""
    worker: Worker = await start(rules_file(tmp_path))
    worker.rebuilt_during_commit.append("not wanted here")  # no forced rebuild during a commit
    leads = [f"e-slices-{n}" for n in range(ROWS_PER_SLICE + 500)]
    now = datetime.now(UTC)
    demos = [
        enriched("demo_request", now, event_id="d1", profile=vp_profile(lead), lead_id=lead) for lead in leads
    ]
    topic = worker.service.settings.topic(TopicName.ENRICHED)
    await produce(
        broker.bootstrap_servers, topic, [(d.lead_id.encode(), d.model_dump_json().encode()) for d in demos]
    )
    await eventually(lambda: len(worker.index) == len(leads), within=60)  # hot for 3 days: none due

    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(len(worker.index))
            await asyncio.sleep(0)

    watching = asyncio.create_task(watch())
    worker.index.clear()  # what a rebalance does
    await eventually(lambda: not worker.index.needs_rebuild and len(worker.index) == len(leads), within=30)
    watching.cancel()
    part_way = [size for size in seen if 0 < size < len(leads)]
    assert part_way, "the rebuild read every lead without giving the loop a turn"
