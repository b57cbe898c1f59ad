"""Reloaded rules re-evaluate every lead the worker holds within seconds, not at each lead's next
event (real broker): the stage changes explain themselves with a "rules" trigger, the decay index
takes the new due times, and the reload is counted and logged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiokafka import ConsumerRecord

from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.batch import Outbox
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics
from services.score import agents
from services.score import app as score_app
from services.score.due import DueIndex
from services.score.rules import DEFAULT_RULES_FILE
from services.score.settings import ScoreSettings
from services.score.state import LeadState
from tests.eventually import eventually, stopped
from tests.kafka import consume_until, produce
from tests.score_worker import changes, cooled, make_warm, raise_warm_threshold, recorded_indexes
from tests.unit.test_score_helpers import enriched, vp_profile

pytestmark = pytest.mark.integration

LEADS = [f"e-recheck-{i}" for i in range(12)]


@pytest.fixture
async def score(
    broker: EmbeddedBroker, suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[StreamService, list[DueIndex]]]:
    rules = tmp_path / "scoring.yaml"
    rules.write_text(DEFAULT_RULES_FILE.read_text())
    indexes = recorded_indexes(monkeypatch)
    monkeypatch.setattr(agents, "RULES_CHECK_CHUNK", 5, raising=False)  # the 12 leads take 3 chunks
    settings = ScoreSettings(
        broker_url=broker.url,
        topic_suffix=suffix,
        web_port=free_port(),
        rules_file=rules,
        rules_reload_interval=0.2,
        decay_check_interval=0.2,
    )
    await ensure_pipeline_topics(settings)
    service = score_app.create_app(settings)
    await service.app.start()
    try:
        yield service, indexes
    finally:
        await stopped(service)


async def metrics_text(service: StreamService) -> str:
    url = f"http://127.0.0.1:{service.settings.web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def test_raised_warm_threshold_cools_every_held_lead_within_seconds(
    score: tuple[StreamService, list[DueIndex]], broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    service, (index,) = score
    bootstrap = broker.bootstrap_servers
    out = service.settings.topic(TopicName.STAGE_CHANGES)
    table = next(t for t in service.tables if t.name == "lead-scores")
    await make_warm(broker, service.settings, LEADS)
    await asyncio.sleep(0.5)  # every batch committed

    caplog.set_level(logging.INFO, logger="services.score.agents")
    reloaded_at = time.time()
    raise_warm_threshold(service.settings.rules_file)  # type: ignore[attr-defined]

    got = await consume_until(bootstrap, out, lambda r: len(cooled(r)) >= len(LEADS), within=15)
    moved = cooled(got)
    assert {c.lead_id for c in moved} == set(LEADS), (
        f"{len(moved)} of {len(LEADS)} leads cooled under the new threshold within 15 s"
    )
    assert all(c.trigger.type == "rules" for c in moved)
    (stamp,) = {c.trigger.event_id.rsplit(":", 1)[1] for c in moved}  # one reload, one id per lead
    assert {c.trigger.event_id for c in moved} == {f"rules:{lead}:{stamp}" for lead in LEADS}
    assert reloaded_at - 1 < int(stamp) / 1000 < time.time()
    assert all(c.scores.total == pytest.approx(85, abs=0.1) for c in moved)

    await asyncio.sleep(1.0)  # nothing more: one change per lead
    again = cooled(await consume_until(bootstrap, out, lambda r: False, within=1.0))
    assert len(again) == len(LEADS)
    for lead in LEADS:  # cold now: stored without a due time, and out of the decay index
        raw = table.get(lead.encode())
        assert raw is not None and LeadState.loads(raw).next_due is None
        assert index.get(lead) is None

    text = await metrics_text(service)
    assert f'leadpipe_score_rules_checks_total{{outcome="moved"}} {float(len(LEADS))}' in text
    queued = [r.getMessage() for r in caplog.records if "re-evaluat" in r.getMessage()]
    assert len(queued) == 1 and f"{len(LEADS)} leads" in queued[0], queued


async def test_a_lead_handled_under_the_old_rules_but_not_stored_at_the_reload_is_rechecked(
    score: tuple[StreamService, list[DueIndex]],
    broker: EmbeddedBroker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reload comes while the lead's first batch awaits its acknowledgements: the table does not
    hold the lead yet, the batch does, and the lead is re-evaluated all the same."""
    service, _ = score
    bootstrap = broker.bootstrap_servers
    out = service.settings.topic(TopicName.STAGE_CHANGES)
    rules_file = service.settings.rules_file  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, logger="services.score.agents")
    lead = "e-recheck-staged"
    flush = Outbox.flush
    held: list[str] = []

    async def reload_during_commit(outbox: Outbox) -> None:
        pending = getattr(outbox, "_pending", [])
        if not held and any(topic == out for topic, _ in pending):
            held.append(lead)
            data = yaml.safe_load(rules_file.read_text())
            data["thresholds"]["warm"] = 100
            rules_file.write_text(yaml.safe_dump(data))
            await eventually(lambda: any("re-evaluat" in r.getMessage() for r in caplog.records), within=10)
        await flush(outbox)

    monkeypatch.setattr(Outbox, "flush", reload_during_commit)
    download = enriched(
        "content_download",
        datetime.now(UTC),
        event_id="wp",
        properties={"asset_type": "whitepaper"},
        profile=vp_profile(lead),
        lead_id=lead,
    )
    await produce(
        bootstrap,
        service.settings.topic(TopicName.ENRICHED),
        [(lead.encode(), download.model_dump_json().encode())],
    )

    def cooled(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return any(c.from_stage == "warm" and c.to_stage == "cold" for c in changes(records))

    got = await consume_until(bootstrap, out, cooled, within=15)
    assert held, "the reload did not come during the lead's commit"
    moved = [
        (c.from_stage, c.to_stage, c.trigger.type) for c in changes(got) if c.kind.value == "temperature"
    ]
    assert moved == [("cold", "warm", "content_download"), ("warm", "cold", "rules")]
