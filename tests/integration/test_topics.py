"""Topic creation against the real broker."""

from __future__ import annotations

import importlib

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
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


@pytest.mark.parametrize("service", ["enrich", "score", "nurture"])
async def test_a_service_creates_its_own_topics_before_it_starts(
    broker: EmbeddedBroker, suffix: str, service: str
) -> None:
    """A topic that first appears when a timer writes to it can stall the producer (score bench)."""
    module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings_class = getattr(settings_module, f"{service.capitalize()}Settings")
    settings = settings_class(broker_url=broker.url, topic_suffix=f"{suffix}-{service}", web_port=free_port())
    app = module.create_app(settings)
    assert app.internal_topics, "every stream service here has a topic of its own"
    await app.ensure_topics()

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    assert set(app.internal_topics) <= existing
