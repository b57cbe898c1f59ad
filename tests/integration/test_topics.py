"""Topic creation against the real broker."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.devstack.broker import EmbeddedBroker
from services.runtime.settings import ServiceSettings
from services.runtime.topics import TopicCreationError, ensure_pipeline_topics, ensure_topics

pytestmark = pytest.mark.integration


async def test_missing_topics_are_created_once_with_the_configured_partitions(
    broker: EmbeddedBroker, suffix: str
) -> None:
    settings = ServiceSettings(broker_url=broker.url, topic_suffix=suffix, topic_partitions=3)
    created = await ensure_pipeline_topics(settings)
    assert len(created) == 9
    assert await ensure_pipeline_topics(settings) == []

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(created)
    finally:
        await admin.close()
    assert {d["topic"]: len(d["partitions"]) for d in described} == dict.fromkeys(created, 3)


async def test_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(TopicCreationError, match="unreachable"):
        await ensure_topics("127.0.0.1:1", ["x"], 1, give_up_after=1)
