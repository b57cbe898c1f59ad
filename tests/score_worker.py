"""What score's worker tests share: its decay indexes, and leads made warm to cool by new rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiokafka import ConsumerRecord

from schemas.stage import StageChange
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.runtime.settings import ServiceSettings
from services.score import app as score_app
from services.score.due import DueIndex
from tests.kafka import consume_until, produce
from tests.unit.test_score_helpers import enriched, vp_profile


def recorded_indexes(monkeypatch: pytest.MonkeyPatch) -> list[DueIndex]:
    """The decay index of every score app created from now on in the test, in order of creation."""
    indexes: list[DueIndex] = []

    class Recorded(DueIndex):
        def __init__(self) -> None:
            super().__init__()
            indexes.append(self)

    monkeypatch.setattr(score_app, "DueIndex", Recorded)
    return indexes


def changes(records: list[ConsumerRecord[bytes, bytes]]) -> list[StageChange]:
    return [StageChange.model_validate_json(r.value) for r in records]


def cooled(records: list[ConsumerRecord[bytes, bytes]]) -> list[StageChange]:
    return [c for c in changes(records) if c.from_stage == "warm" and c.to_stage == "cold"]


async def make_warm(broker: EmbeddedBroker, settings: ServiceSettings, leads: list[str]) -> None:
    """A whitepaper for each lead, a VP: fit 65 + 20 = 85, warm (warm: 80), due to cool in about a
    half-life; returns once score published every lead's move to warm."""
    now = datetime.now(UTC)
    downloads = [
        enriched(
            "content_download",
            now,
            event_id=f"{lead}-wp",
            properties={"asset_type": "whitepaper"},
            profile=vp_profile(lead),
            lead_id=lead,
        )
        for lead in leads
    ]
    bootstrap = broker.bootstrap_servers
    await produce(
        bootstrap,
        settings.topic(TopicName.ENRICHED),
        [(e.lead_id.encode(), e.model_dump_json().encode()) for e in downloads],
    )

    def warm(records: list[ConsumerRecord[bytes, bytes]]) -> set[str]:
        return {c.lead_id for c in changes(records) if c.to_stage == "warm"}

    await consume_until(
        bootstrap, settings.topic(TopicName.STAGE_CHANGES), lambda r: warm(r) == set(leads), within=30
    )


def raise_warm_threshold(rules: Path) -> None:
    """Warm from 100: the leads `make_warm` made, at 85, are cold under these rules."""
    data = yaml.safe_load(rules.read_text())
    data["thresholds"]["warm"] = 100
    rules.write_text(yaml.safe_dump(data))
