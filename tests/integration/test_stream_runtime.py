"""The shared faust runtime against the real broker: decode, dead-letter, health, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import faust
import pytest

from schemas.dead_letter import DeadLetter
from schemas.interaction import Interaction
from schemas.topics import TopicName
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.codec import Decoder
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics
from tests.eventually import stopped
from tests.kafka import consume_until, produce

pytestmark = pytest.mark.integration

VALID = {
    "event_id": "ev-1",
    "occurred_at": "2026-11-21T09:30:00Z",
    "lead_id": "e-1",
    "type": "page_view",
    "identity": "email",
    "received_at": "2026-11-21T09:30:01Z",
}


def echo_service(settings: ServiceSettings) -> StreamService:
    """A minimal service: decode interactions and forward them to leads.enriched unchanged."""
    service = StreamService("echo", settings)
    source = service.topic(TopicName.INTERACTIONS)
    sink = service.topic(TopicName.ENRICHED)
    decoder: Decoder[Interaction] = Decoder(Interaction, "echo")

    @service.app.agent(source)
    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            record = await service.decode(decoder, event)
            if record is not None:
                await service.send(sink, record.lead_id, record)

    return service


@pytest.fixture
async def running(broker: EmbeddedBroker, suffix: str) -> AsyncIterator[StreamService]:
    settings = ServiceSettings(
        broker_url=broker.url, topic_suffix=suffix, web_port=free_port(), broker_session_timeout=6
    )
    await ensure_pipeline_topics(settings)
    service = echo_service(settings)
    await service.app.start()
    try:
        yield service
    finally:
        await stopped(service)


async def test_poison_record_goes_to_dlq_and_processing_continues(
    running: StreamService, broker: EmbeddedBroker
) -> None:
    topic = running.settings.topic(TopicName.INTERACTIONS)
    await produce(
        broker.bootstrap_servers,
        topic,
        [
            (b"e-1", b"{not json"),
            (b"e-1", json.dumps({**VALID, "type": "no_such_type"}).encode()),
            (b"e-1", json.dumps(VALID).encode()),
        ],
    )
    forwarded = await consume_until(
        broker.bootstrap_servers, running.settings.topic(TopicName.ENRICHED), lambda r: len(r) >= 1
    )
    assert [Interaction.model_validate_json(r.value).event_id for r in forwarded] == ["ev-1"]
    assert forwarded[0].key == b"e-1"

    dead = await consume_until(
        broker.bootstrap_servers, running.settings.topic(TopicName.DLQ), lambda r: len(r) >= 2
    )
    letters = [DeadLetter.model_validate_json(r.value) for r in dead]
    assert [letter.reason for letter in letters] == ["invalid_json", "validation_failed"]
    assert "type" in letters[1].detail
    for letter, record in zip(letters, dead, strict=True):
        assert letter.origin.topic == topic
        assert letter.service == "echo"
        assert letter.lead_id == "e-1"
        assert record.key == b"e-1"
    assert letters[0].origin.partition == letters[1].origin.partition
    assert letters[1].origin.offset == letters[0].origin.offset + 1
    assert letters[0].payload == "{not json"


async def test_health_ready_and_metrics(running: StreamService, broker: EmbeddedBroker) -> None:
    base = f"http://127.0.0.1:{running.settings.web_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        for _ in range(100):
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.2)
        assert response.status == 200, await response.text()
        await produce(broker.bootstrap_servers, running.settings.topic(TopicName.INTERACTIONS), [(b"x", b"")])
        await consume_until(
            broker.bootstrap_servers, running.settings.topic(TopicName.DLQ), lambda r: len(r) >= 1
        )
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
    assert 'leadpipe_dead_letters_total{reason="empty_value",service="echo"' in text
    assert "leadpipe_events_in_total" in text


async def test_consumer_lag_settles_to_zero_once_committed(
    running: StreamService, broker: EmbeddedBroker
) -> None:
    topic = running.settings.topic(TopicName.INTERACTIONS)
    await produce(broker.bootstrap_servers, topic, [(b"e-1", json.dumps(VALID).encode())] * 3)
    forwarded = await consume_until(
        broker.bootstrap_servers, running.settings.topic(TopicName.ENRICHED), lambda r: len(r) >= 3
    )
    assert len(forwarded) == 3

    def lags() -> dict[str, float]:
        return {
            sample.labels["partition"]: sample.value
            for metric in running.metrics.registry.collect()
            if metric.name == "leadpipe_consumer_lag"
            for sample in metric.samples
            if sample.labels["topic"] == topic
        }

    for _ in range(50):  # faust commits every few seconds
        await running._report_lag()
        if lags() and all(value == 0 for value in lags().values()):
            break
        await asyncio.sleep(0.2)
    assert sorted(lags()) == ["0", "1", "2", "3"]
    assert set(lags().values()) == {0}
