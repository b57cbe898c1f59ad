"""Rules changed while score was down apply to the leads it holds as soon as it is back (real
broker): each lead keeps the digest of the rules it was last evaluated under, and the worker that
restores it from the changelog evaluates again those evaluated under other rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiokafka import ConsumerRecord

from schemas.stage import StageChange
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics
from services.score import app as score_app
from services.score.rules import DEFAULT_RULES_FILE
from services.score.settings import ScoreSettings
from tests.eventually import stopped
from tests.kafka import consume_until, produce
from tests.unit.test_score_helpers import enriched, vp_profile

pytestmark = pytest.mark.integration

LEADS = [f"e-restart-{i}" for i in range(4)]


async def start(broker: EmbeddedBroker, suffix: str, rules: Path) -> StreamService:
    settings = ScoreSettings(
        broker_url=broker.url,
        topic_suffix=suffix,
        web_port=free_port(),
        rules_file=rules,
        decay_check_interval=0.2,
    )
    await ensure_pipeline_topics(settings)
    service = score_app.create_app(settings)
    await service.app.start()
    return service


def changes(records: list[ConsumerRecord[bytes, bytes]]) -> list[StageChange]:
    return [StageChange.model_validate_json(r.value) for r in records]


async def test_rules_changed_while_the_worker_was_down_apply_once_it_is_back(
    broker: EmbeddedBroker, suffix: str, tmp_path: Path
) -> None:
    rules = tmp_path / "scoring.yaml"
    rules.write_text(DEFAULT_RULES_FILE.read_text())
    service = await start(broker, suffix, rules)
    bootstrap = broker.bootstrap_servers
    out = service.settings.topic(TopicName.STAGE_CHANGES)
    now = datetime.now(UTC)
    # fit 65 + a whitepaper's 20 = 85: warm (warm: 80)
    downloads = [
        enriched(
            "content_download",
            now,
            event_id=f"{lead}-wp",
            properties={"asset_type": "whitepaper"},
            profile=vp_profile(lead),
            lead_id=lead,
        )
        for lead in LEADS
    ]
    try:
        await produce(
            bootstrap,
            service.settings.topic(TopicName.ENRICHED),
            [(e.lead_id.encode(), e.model_dump_json().encode()) for e in downloads],
        )

        def warm(records: list[ConsumerRecord[bytes, bytes]]) -> set[str]:
            return {c.lead_id for c in changes(records) if c.to_stage == "warm"}

        await consume_until(bootstrap, out, lambda r: warm(r) == set(LEADS), within=30)
    finally:
        await stopped(service)  # commits and stores what it handled

    data = yaml.safe_load(rules.read_text())
    data["thresholds"]["warm"] = 100  # 85 is cold now
    rules.write_text(yaml.safe_dump(data))
    service = await start(broker, suffix, rules)
    try:

        def cooled(records: list[ConsumerRecord[bytes, bytes]]) -> list[StageChange]:
            return [c for c in changes(records) if c.from_stage == "warm" and c.to_stage == "cold"]

        got = await consume_until(bootstrap, out, lambda r: len(cooled(r)) >= len(LEADS), within=60)
        moved = cooled(got)
        assert {c.lead_id for c in moved} == set(LEADS), f"{len(moved)} of {len(LEADS)} leads cooled"
        assert all(c.trigger.type == "rules" for c in moved)
    finally:
        await stopped(service)
