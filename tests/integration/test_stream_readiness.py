"""A stream worker's readiness follows the broker: `/readyz` answers 503 while no broker answers, and
200 again once one does. Against a broker of its own, which the test freezes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import faust
import pytest

from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from services.runtime.settings import ServiceSettings
from services.runtime.stream_app import StreamService
from services.runtime.topics import ensure_topics
from tests.eventually import eventually, stopped

pytestmark = pytest.mark.integration


async def test_a_worker_is_not_ready_while_its_broker_does_not_answer(tmp_path: Path, suffix: str) -> None:
    """Readiness was set at the first rebalance and never cleared: with the broker gone, score's
    `/readyz` answered 200 a minute later, and `leadpipe status` exited 0 with every service "ready"."""
    with EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log") as broker:
        assert broker.process is not None
        settings = ServiceSettings(
            broker_url=broker.url, topic_suffix=suffix, topic_partitions=1, web_port=free_port()
        )
        service = StreamService("readiness", settings)
        topic = service.topic("leads.interactions")
        await ensure_topics(broker.bootstrap_servers, [topic.get_topic_name()], 1)

        @service.app.agent(topic)
        async def idle(stream: faust.StreamT[bytes]) -> None:  # a subscription, so the worker joins
            async for _ in stream:
                pass

        async def ready() -> bool:
            return (await service.health.report())[0]

        async def not_ready() -> bool:
            return not await ready()

        await service.app.start()
        try:
            await eventually(ready, within=60)
            os.kill(broker.process.pid, signal.SIGSTOP)
            try:
                await eventually(not_ready, within=30)
                assert (await service.health.report())[1] == {"consumer_group": True, "broker": False}
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)
            await eventually(ready, within=60)
        finally:
            await stopped(service)
