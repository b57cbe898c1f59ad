"""A running score worker picks up an edited rules file without losing lead state, and refuses an
invalid one (logged, the previous rules stay active)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiokafka import ConsumerRecord

from schemas.enriched import EnrichedInteraction
from schemas.stage import StageChange
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics
from services.score.app import create_app
from services.score.rules import DEFAULT_RULES_FILE
from services.score.settings import ScoreSettings
from tests.eventually import stopped
from tests.kafka import consume_until, produce
from tests.unit.test_score_helpers import enriched, vp_profile

pytestmark = pytest.mark.integration

# old: 15. With it, pricing makes the lead hot (65 fit + 22 + 34 >= 120). Not 33, exactly 120: the
# reload re-evaluates the lead at the reload's time, so its earlier 22 points have decayed a little.
NEW_PRICING_POINTS = 34.0


def write_rules(path: Path, pricing_points: float, **changes: Any) -> None:
    data = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    for rule in data["engagement"]:
        if rule["name"] == "pricing_page":
            rule["points"] = pricing_points
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture
async def score(broker: EmbeddedBroker, suffix: str, tmp_path: Path) -> AsyncIterator[StreamService]:
    rules = tmp_path / "scoring.yaml"
    write_rules(rules, 15)
    settings = ScoreSettings(
        broker_url=broker.url,
        topic_suffix=suffix,
        web_port=free_port(),
        rules_file=rules,
        rules_reload_interval=0.2,
    )
    await ensure_pipeline_topics(settings)
    service = create_app(settings)
    await service.app.start()
    try:
        yield service
    finally:
        await stopped(service)


def record(event: EnrichedInteraction) -> tuple[bytes, bytes]:
    return event.lead_id.encode(), event.model_dump_json().encode()


def changes(records: list[ConsumerRecord[bytes, bytes]]) -> list[StageChange]:
    return [StageChange.model_validate_json(r.value) for r in records]


async def metric_line(service: StreamService, wanted: str, within: float = 10.0) -> str:
    """Poll /metrics until a line starting with `wanted` appears; return it."""
    url = f"http://127.0.0.1:{service.settings.web_port}/metrics"
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(url) as response:
                for line in (await response.text()).splitlines():
                    if line.startswith(wanted):
                        return line
            await asyncio.sleep(0.1)
    raise AssertionError(f"no metric {wanted} within {within}s")


async def test_edited_rules_apply_to_new_events_and_keep_lead_state(
    score: StreamService, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = broker.bootstrap_servers
    source = score.settings.topic(TopicName.ENRICHED)
    out = score.settings.topic(TopicName.STAGE_CHANGES)
    assert isinstance(score.settings, ScoreSettings)
    rules_file = score.settings.rules_file
    lead, other = "e-reload-1", "e-reload-2"
    now = datetime.now(UTC)

    def event(lead_id: str, type_: str, name: str, **properties: str) -> EnrichedInteraction:
        return enriched(
            type_,
            now,
            event_id=f"{lead_id}-{name}",
            properties=dict(properties),
            profile=vp_profile(lead_id),
            lead_id=lead_id,
        )

    # 1. under the first rules: a page view and a whitepaper make the lead a warm IQL (fit 65 + 22)
    await produce(
        bootstrap,
        source,
        [
            record(event(lead, "page_view", "pv", url="/blog")),
            record(event(lead, "content_download", "wp", asset_type="whitepaper")),
        ],
    )
    await consume_until(bootstrap, out, lambda r: any(c.to_stage == "warm" for c in changes(r)))

    # 2. pricing is worth more now; the running worker reloads the file
    write_rules(rules_file, NEW_PRICING_POINTS)
    await metric_line(score, 'leadpipe_score_rules_reloads_total{result="ok"} 1.0')
    await produce(bootstrap, source, [record(event(lead, "page_view", "pricing", url="/pricing"))])
    got = await consume_until(bootstrap, out, lambda r: any(c.to_stage == "hot" for c in changes(r)))
    hot = next(c for c in changes(got) if c.to_stage == "hot")
    points = {r.rule: r.points for r in hot.reasons}
    assert points["pricing_page"] == NEW_PRICING_POINTS  # the new rule
    assert points["whitepaper"] == 20  # earlier points kept: the state survived the reload
    assert hot.from_stage == "warm" and hot.lifecycle.value == "mql"
    assert hot.scores.engagement == pytest.approx(2 + 20 + NEW_PRICING_POINTS, abs=0.1)

    # 3. an invalid file (hot below warm) is refused, logged with file, key and problem; the
    #    previous rules stay: pricing still counts 34, not this file's 99
    caplog.set_level(logging.ERROR, logger="services.score.agents")
    write_rules(rules_file, 99, thresholds={"warm": 80, "hot": 50, "mql_fit": 30, "mql_engagement": 30})
    await metric_line(score, 'leadpipe_score_rules_reloads_total{result="invalid"} 1.0')
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(str(rules_file) in m and "thresholds" in m and "must be above warm" in m for m in refused), (
        refused
    )
    await produce(bootstrap, source, [record(event(other, "page_view", "pricing", url="/pricing"))])
    got = await consume_until(bootstrap, out, lambda r: sum(c.lead_id == other for c in changes(r)) >= 2)
    moved = [c for c in changes(got) if c.lead_id == other]
    # with the refused file's thresholds it would have gone cold -> hot
    assert {(c.from_stage, c.to_stage) for c in moved} == {("raw", "mql"), ("cold", "warm")}
    for c in moved:
        assert {r.rule: r.points for r in c.reasons}["pricing_page"] == NEW_PRICING_POINTS
        assert c.scores.total == pytest.approx(65 + NEW_PRICING_POINTS, abs=0.1)
