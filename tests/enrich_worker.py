"""An enrich worker on the test broker and Redis, with its privacy policy in a file."""

from __future__ import annotations

from pathlib import Path

from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.enrich.agents import INBOX
from services.enrich.app import create_app
from services.enrich.settings import EnrichSettings
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_pipeline_topics, ensure_topics

POLICY = """
inactive_lead_retention: {retention}
retention_sweep_interval: 0.5
activity_resolution: 1
"""


async def start_enrich(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path, retention: str
) -> StreamService:
    policy = tmp_path / "privacy.yaml"
    policy.write_text(POLICY.format(retention=retention))
    settings = EnrichSettings(
        broker_url=broker.url,
        redis_url=redis_url,
        topic_suffix=suffix,
        web_port=free_port(),
        privacy_file=policy,
    )
    await ensure_pipeline_topics(settings)
    await ensure_topics(settings.bootstrap_servers, [settings.topic(INBOX)], settings.topic_partitions)
    service = create_app(settings)
    await service.app.start()
    return service
