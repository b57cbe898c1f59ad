"""Rules changed while score was down apply to the leads it holds as soon as it is back (real
broker): each lead keeps the digest of the rules it was last evaluated under, and the worker that
restores it from the changelog evaluates again those evaluated under other rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics
from services.score import app as score_app
from services.score.rules import DEFAULT_RULES_FILE
from services.score.settings import ScoreSettings
from tests.eventually import stopped
from tests.kafka import consume_until
from tests.score_worker import cooled, make_warm, raise_warm_threshold

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


async def test_rules_changed_while_the_worker_was_down_apply_once_it_is_back(
    broker: EmbeddedBroker, suffix: str, tmp_path: Path
) -> None:
    rules = tmp_path / "scoring.yaml"
    rules.write_text(DEFAULT_RULES_FILE.read_text())
    service = await start(broker, suffix, rules)
    out = service.settings.topic(TopicName.STAGE_CHANGES)
    try:
        await make_warm(broker, service.settings, LEADS)
    finally:
        await stopped(service)  # commits and stores what it handled

    raise_warm_threshold(rules)
    service = await start(broker, suffix, rules)
    try:
        got = await consume_until(
            broker.bootstrap_servers, out, lambda r: len(cooled(r)) >= len(LEADS), within=60
        )
        moved = cooled(got)
        assert {c.lead_id for c in moved} == set(LEADS), f"{len(moved)} of {len(LEADS)} leads cooled"
        assert all(c.trigger.type == "rules" for c in moved)
    finally:
        await stopped(service)
