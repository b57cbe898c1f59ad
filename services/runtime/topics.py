"""Create the pipeline's topics when they are missing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas.topics import TOPICS
from services.runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


class TopicCreationError(RuntimeError):
    pass


async def ensure_topics(
    bootstrap_servers: str, names: Iterable[str], partitions: int, *, give_up_after: float = 30.0
) -> list[str]:
    """Create each missing topic; return the names created. Safe to run from every service at once."""
    wanted = list(dict.fromkeys(names))
    deadline = asyncio.get_running_loop().time() + give_up_after
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
        try:
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = [n for n in wanted if n not in existing]
                if not missing:
                    return []
                response = await admin.create_topics(
                    [NewTopic(name, partitions, 1) for name in missing], timeout_ms=10000
                )
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
            log.info("created topics %s with %d partitions", created, partitions)
        return created


def pipeline_topic_names(settings: ServiceSettings) -> list[str]:
    return [settings.topic(spec.name) for spec in TOPICS]


async def ensure_pipeline_topics(settings: ServiceSettings, *, give_up_after: float = 30.0) -> list[str]:
    return await ensure_topics(
        settings.bootstrap_servers,
        pipeline_topic_names(settings),
        settings.topic_partitions,
        give_up_after=give_up_after,
    )
