"""Create the pipeline's topics when they are missing, configured from `config/topics.yaml`.

Existing topics are never altered: changing retention or replicas of a live topic is an operator's
decision. When one differs from the file (a cluster that predates it, a hand-made topic), the
services log a warning with the `kafka-configs.sh` command that would align it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas.topics import TOPICS
from services.runtime.settings import ServiceSettings
from services.runtime.topic_config import TopicPlan

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36

TopicConfigs = Mapping[str, Mapping[str, str]]  # topic name -> Kafka config key -> value


class TopicCreationError(RuntimeError):
    pass


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int,
    *,
    give_up_after: float = 30.0,
    replication_factor: int = 1,
    configs: TopicConfigs | None = None,
    config_source: str = "the requested configuration",
) -> list[str]:
    """Create each missing topic; return the names created. Safe to run from every service at once.

    `configs` gives the topic configs per name (none: the broker's defaults); topics that exist
    already are compared with them and with `replication_factor`, and a difference is logged."""
    wanted = list(dict.fromkeys(names))
    configs = configs or {}
    deadline = asyncio.get_running_loop().time() + give_up_after
    compared = False
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
        try:
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                present = [n for n in wanted if n in existing]
                if present and not compared and (configs or replication_factor > 1):
                    compared = True
                    await _warn_on_drift(admin, present, configs, replication_factor, config_source)
                missing = [n for n in wanted if n not in existing]
                if not missing:
                    return []
                new_topics = [
                    NewTopic(name, partitions, replication_factor, topic_configs=dict(configs.get(name, {})))
                    for name in missing
                ]
                response = await admin.create_topics(new_topics, timeout_ms=10000)
            finally:
                await admin.close()
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise TopicCreationError(f"broker {bootstrap_servers} unreachable: {exc}") from exc
            await asyncio.sleep(0.5)
            continue
        failed = [
            (name, code, message)
            for name, code, message in response.topic_errors
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise TopicCreationError(f"could not create topics: {failed}")
        created = [name for name, code, _ in response.topic_errors if code == 0]
        if created:
            log.info(
                "created topics %s with %d partitions, %d replicas", created, partitions, replication_factor
            )
        return created


async def topic_drift(
    admin: AIOKafkaAdminClient, configs: TopicConfigs, replication_factor: int | None = None
) -> dict[str, dict[str, tuple[str | None, str]]]:
    """Per existing topic, each config (and `replicas`) whose value differs: (actual, wanted).

    An actual value of None means the broker did not report the key (not set on the topic)."""
    drift: dict[str, dict[str, tuple[str | None, str]]] = {}
    # No key filter: Tansu 0.6 cannot decode DescribeConfigs with one and drops the connection.
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name, wanted in configs.items() if wanted]
    if resources:
        for response in await admin.describe_configs(resources):
            for error_code, _message, _type, name, entries in response.resources:
                if error_code != 0:
                    continue
                actual = {entry[0]: entry[1] for entry in entries}
                differs = {
                    key: (actual.get(key), value)
                    for key, value in configs.get(name, {}).items()
                    if actual.get(key) != value
                }
                if differs:
                    drift[name] = differs
    if replication_factor is not None:
        for topic in await admin.describe_topics(list(configs)):
            replicas = {len(p["replicas"]) for p in topic["partitions"]}
            if topic["error_code"] == 0 and replicas and replicas != {replication_factor}:
                actual_replicas = ",".join(str(r) for r in sorted(replicas))
                drift.setdefault(topic["topic"], {})["replicas"] = (actual_replicas, str(replication_factor))
    return drift


def _remedy(name: str, differs: Mapping[str, tuple[str | None, str]]) -> str:
    """What an operator would run to align the topic (leadpipe does not)."""
    pairs = [f"{k}=[{v}]" if "," in v else f"{k}={v}" for k, (_, v) in differs.items() if k != "replicas"]
    steps = []
    if pairs:
        alter = f"kafka-configs.sh --alter --entity-type topics --entity-name {name}"
        steps.append(f"{alter} --add-config {','.join(pairs)}")
    if "replicas" in differs:
        steps.append("kafka-reassign-partitions.sh for the replicas")
    return "; ".join(steps)


async def _warn_on_drift(
    admin: AIOKafkaAdminClient,
    names: list[str],
    configs: TopicConfigs,
    replication_factor: int,
    source: str,
) -> None:
    """Log topics that differ from the configuration; never fail or alter anything because of it."""
    try:
        drift = await topic_drift(admin, {n: configs.get(n, {}) for n in names}, replication_factor)
    except (KafkaError, OSError, ValueError) as exc:
        log.info("could not compare existing topics with %s: %s", source, exc)
        return
    for name, differs in drift.items():
        found = ", ".join(
            f"{key} is {'not set' if actual is None else actual} (wanted {wanted})"
            for key, (actual, wanted) in differs.items()
        )
        log.warning(
            "topic %s differs from %s: %s; left as it is (to align: %s)",
            name,
            source,
            found,
            _remedy(name, differs),
        )


def pipeline_topic_names(settings: ServiceSettings) -> list[str]:
    return [settings.topic(spec.name) for spec in TOPICS]


def topic_plan(settings: ServiceSettings) -> TopicPlan:
    """The validated topics file for these settings (raises TopicConfigError naming the file)."""
    return TopicPlan.load(settings.topics_file, settings.topic_replication_factor, settings.topic_suffix)


async def ensure_configured_topics(
    settings: ServiceSettings, names: Iterable[str], *, give_up_after: float = 30.0
) -> list[str]:
    """Create the missing ones of `names` (physical names) with the topics file's configuration."""
    plan = topic_plan(settings)
    wanted = list(dict.fromkeys(names))
    return await ensure_topics(
        settings.bootstrap_servers,
        wanted,
        settings.topic_partitions,
        give_up_after=give_up_after,
        replication_factor=plan.replication_factor,
        configs={name: plan.configs(name) for name in wanted},
        config_source=str(settings.topics_file),
    )


async def ensure_pipeline_topics(settings: ServiceSettings, *, give_up_after: float = 30.0) -> list[str]:
    """Create the catalogue's missing topics with their configuration."""
    return await ensure_configured_topics(
        settings, pipeline_topic_names(settings), give_up_after=give_up_after
    )


def changelog_topic_configs(settings: ServiceSettings) -> dict[str, str]:
    """Configs for faust's changelog topics: pass as a table's `extra_topic_configs`."""
    return topic_plan(settings).changelog_configs()
