"""Publishing with the broker's acknowledgement, or a clear "unavailable"."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time; the caller answers 503 and the sender retries."""


class Acknowledgement(Protocol):
    partition: int
    offset: int


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes, value: bytes) -> Acknowledgement: ...
    async def reachable(self) -> bool: ...
    async def close(self) -> None: ...


class KafkaPublisher:
    """An aiokafka producer (acks=all), started lazily: capture runs and answers 503 while no broker."""

    def __init__(self, bootstrap_servers: str, timeout: float) -> None:
        self._bootstrap = bootstrap_servers
        self._timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    linger_ms=1,
                    request_timeout_ms=int(self._timeout * 1000),
                    metadata_max_age_ms=30000,
                )
                try:
                    await asyncio.wait_for(producer.start(), self._timeout)
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
                self._producer = producer
        return self._producer

    async def publish(self, topic: str, key: bytes, value: bytes) -> Acknowledgement:
        producer = await self._ensure_producer()
        try:
            metadata: Acknowledgement = await asyncio.wait_for(
                producer.send_and_wait(topic, value=value, key=key), self._timeout
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
        return metadata

    async def reachable(self) -> bool:
        try:
            producer = await self._ensure_producer()
            await asyncio.wait_for(producer.client.fetch_all_metadata(), self._timeout)
        except (BrokerUnavailable, KafkaError, OSError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
