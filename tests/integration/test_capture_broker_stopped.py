"""With the broker frozen capture answers 503; nothing it answered 202 for is missing afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas import Interaction, TopicName
from services.capture.app import create_app
from services.capture.auth import client_of
from services.capture.domain import published_event_id
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.topics import ensure_pipeline_topics
from tests.kafka import consume_until

pytestmark = pytest.mark.integration


async def test_frozen_broker_means_503_and_every_202_survives(
    tmp_path: Path, redis_url: str, suffix: str
) -> None:
    with EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log") as broker:
        assert broker.process is not None
        settings = CaptureSettings(
            broker_url=broker.url,
            redis_url=redis_url,
            topic_suffix=suffix,
            api_keys="k",
            publish_timeout=1.5,
            topic_partitions=1,
        )
        await ensure_pipeline_topics(settings)
        async with TestClient(TestServer(create_app(settings))) as client:

            async def send(n: int) -> tuple[str, int]:
                event = {
                    "event_id": f"frozen-{n}",
                    "type": "page_view",
                    "occurred_at": "2026-11-21T09:30:00Z",
                    "anonymous_id": f"anon-{n}",
                }
                response = await client.post("/v1/events", json=event, headers={"X-API-Key": "k"})
                # the id consumers see: the sender's, within its API client's ids
                return published_event_id(event["event_id"], client_of("k")), response.status

            before = [await send(n) for n in range(5)]
            os.kill(broker.process.pid, signal.SIGSTOP)
            try:
                during = [await send(n) for n in range(5, 8)]
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)
            await asyncio.sleep(0.5)
            retried = [await send(n) for n in range(5, 8)]  # senders retry what got 503
            after = [await send(n) for n in range(8, 10)]

        assert {status for _, status in before + after} == {202}
        assert {status for _, status in during} == {503}
        acknowledged = {eid for eid, status in before + retried + after if status == 202}
        assert {status for _, status in retried} == {202}
        records = await consume_until(
            broker.bootstrap_servers,
            settings.topic(TopicName.INTERACTIONS),
            lambda r: {Interaction.model_validate_json(x.value).event_id for x in r} >= acknowledged,
            within=10,
        )
        stored = {Interaction.model_validate_json(r.value).event_id for r in records}
        assert acknowledged <= stored
