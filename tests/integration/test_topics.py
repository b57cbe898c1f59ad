"""Topic creation against the real broker, with the configuration of config/topics.yaml.

Measured on Tansu 0.6: CreateTopics accepts every config and any replication factor (one broker
reports itself as each replica) and DescribeConfigs returns the configs set at creation, so the
same code runs on Tansu and Apache Kafka; Tansu neither expires nor compacts by them. DescribeConfigs
with a key filter makes Tansu drop the connection, so the runtime asks for all keys.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import TopicName
from services.capture.app import _ensure_topics_until_done
from services.capture.app import create_app as create_capture_app
from services.capture.settings import CaptureSettings
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.settings import ServiceSettings
from services.runtime.topic_config import TopicConfigError
from services.runtime.topics import (
    TopicCreationError,
    changelog_topic_configs,
    ensure_configured_topics,
    ensure_pipeline_topics,
    ensure_topics,
    pipeline_topic_names,
    topic_plan,
)

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000


async def described(broker: EmbeddedBroker, names: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's configs as the broker reports them, and `replicas` (per partition, joined)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        responses = await admin.describe_configs(resources)
        topics = await admin.describe_topics(names)
    finally:
        await admin.close()
    configs = {
        name: {entry[0]: entry[1] for entry in entries}
        for response in responses
        for _, _, _, name, entries in response.resources
    }
    for topic in topics:
        replicas = sorted({len(p["replicas"]) for p in topic["partitions"]})
        configs[topic["topic"]]["replicas"] = ",".join(map(str, replicas))
    return configs


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


async def test_topics_are_created_with_the_files_retention_and_cleanup_policy(
    broker: EmbeddedBroker, suffix: str
) -> None:
    settings = ServiceSettings(broker_url=broker.url, topic_suffix=suffix)
    await ensure_pipeline_topics(settings)
    configs = await described(broker, pipeline_topic_names(settings))
    lead = configs[settings.topic(TopicName.INTERACTIONS)]
    assert lead == {
        "cleanup.policy": "delete",
        "retention.ms": str(6 * DAY_MS),
        "segment.ms": str(DAY_MS),
        "replicas": "1",
    }
    assert configs[settings.topic(TopicName.DLQ)]["retention.ms"] == str(14 * DAY_MS)
    assert configs[settings.topic(TopicName.PRIVACY)]["retention.ms"] == str(30 * DAY_MS)
    assert all(c["cleanup.policy"] == "delete" and "retention.ms" in c for c in configs.values())


async def test_the_replication_factor_and_min_insync_replicas_are_applied(
    broker: EmbeddedBroker, suffix: str
) -> None:
    settings = ServiceSettings(broker_url=broker.url, topic_suffix=suffix, topic_replication_factor=3)
    await ensure_pipeline_topics(settings)
    configs = await described(broker, pipeline_topic_names(settings))
    assert {c["replicas"] for c in configs.values()} == {"3"}
    assert {c["min.insync.replicas"] for c in configs.values()} == {"2"}


async def test_changelog_configs_are_accepted(broker: EmbeddedBroker, suffix: str) -> None:
    """What faust's tables get as extra_topic_configs (compacted, compaction forced within a week)."""
    settings = ServiceSettings(broker_url=broker.url, topic_suffix=suffix)
    name = f"leadpipe-test{suffix}-table-changelog"
    wanted = changelog_topic_configs(settings)
    assert await ensure_topics(broker.bootstrap_servers, [name], 1, configs={name: wanted}) == [name]
    assert (await described(broker, [name]))[name] == {**wanted, "replicas": "1"}


async def test_an_existing_topic_that_differs_is_reported_and_left_alone(
    broker: EmbeddedBroker, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServiceSettings(broker_url=broker.url, topic_suffix=suffix)
    dlq = settings.topic(TopicName.DLQ)
    await ensure_topics(broker.bootstrap_servers, [dlq], 2)  # made by hand: the broker's defaults
    with caplog.at_level(logging.WARNING, logger="services.runtime.topics"):
        created = await ensure_pipeline_topics(settings)
    assert dlq not in created and len(created) == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        f"topic {dlq} differs from {settings.topics_file}: cleanup.policy is not set (wanted delete)"
        in (warnings[0])
    )
    assert (
        f"--entity-name {dlq} --add-config cleanup.policy=delete,retention.ms={14 * DAY_MS}," in warnings[0]
    )
    assert (await described(broker, [dlq]))[dlq] == {"replicas": "1"}

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="services.runtime.topics"):
        await ensure_pipeline_topics(settings.model_copy(update={"topic_replication_factor": 2}))
    replicas = [r.getMessage() for r in caplog.records if "replicas is 1 (wanted 2)" in r.getMessage()]
    assert len(replicas) == 9, "every existing topic has one replica, not two"


async def test_a_broken_topics_file_stops_before_the_broker_is_asked(tmp_path: Path) -> None:
    broken = tmp_path / "topics.yaml"
    broken.write_text("topics: {}\n")
    settings = ServiceSettings(broker_url="127.0.0.1:1", topics_file=broken)
    with pytest.raises(TopicConfigError, match=r"missing leads\.interactions"):
        await ensure_pipeline_topics(settings, give_up_after=30)


async def test_capture_refuses_to_start_on_a_broken_topics_file(tmp_path: Path) -> None:
    """capture creates its topics in the background (it accepts events while the broker is away);
    a broken file must stop its start-up instead, and never be retried."""
    broken = tmp_path / "topics.yaml"
    broken.write_text("topics: {}\n")
    settings = CaptureSettings(broker_url="127.0.0.1:1", topics_file=broken)
    with pytest.raises(TopicConfigError, match=r"topics\.yaml: .*missing leads\.interactions"):
        create_capture_app(settings)
    # and a file broken after start-up ends the background retries with the error logged
    await asyncio.wait_for(_ensure_topics_until_done(settings), timeout=10)


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
    plan = topic_plan(settings)
    assert {plan.base_name(name) for name in app.internal_topics} <= set(plan.file.internal), (
        "config/topics.yaml names each service's own topics"
    )
    await ensure_configured_topics(settings, app.internal_topics)
    await app.ensure_topics()

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    assert set(app.internal_topics) <= existing
    configs = await described(broker, app.internal_topics)
    for name in app.internal_topics:
        assert configs[name] == {**plan.configs(name), "replicas": "1"}
