"""Publishing with the broker's acknowledgement, or a clear "unavailable"."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from services.runtime.partitioner import KafkaPartitioner

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time; the caller answers 503 and the sender retries."""


class RecordTooLarge(Exception):
    """A record over the producer's (or the broker's) size limit: no retry can store it, so the caller
    answers 413 instead of the 503 a broker outage gets. `limit` is None when the broker refused it."""

    def __init__(self, size: int, limit: int | None) -> None:
        self.size = size
        self.limit = limit
        within = f"the limit of {limit} bytes" if limit is not None else "the broker's limit"
        super().__init__(f"the record is {size} bytes, over {within}")


def record_size(key: bytes, value: bytes) -> int:
    """A record's size as the producer counts it against `max_request_size` (aiokafka's own estimate)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    return size


class Acknowledgement(Protocol):
    partition: int
    offset: int


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes, value: bytes) -> Acknowledgement: ...
    async def publish_many(
        self, topic: str, records: Sequence[tuple[bytes, bytes]]
    ) -> list[Acknowledgement | BaseException]: ...
    async def reachable(self) -> bool: ...
    async def close(self) -> None: ...


class KafkaPublisher:
    """An aiokafka producer (acks=all), started lazily: capture runs and answers 503 while no broker.
    `max_record_bytes`: the producer's `max_request_size`, the largest record it hands to the broker."""

    def __init__(self, bootstrap_servers: str, timeout: float, max_record_bytes: int = 1048576) -> None:
        self._bootstrap = bootstrap_servers
        self._timeout = timeout
        self._max_record_bytes = max_record_bytes
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
                    max_request_size=self._max_record_bytes,
                    partitioner=KafkaPartitioner(),
                )
                try:
                    async with asyncio.timeout(self._timeout):  # not wait_for: redis_client.py says why
                        await producer.start()
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
                self._producer = producer
        return self._producer

    async def publish(self, topic: str, key: bytes, value: bytes) -> Acknowledgement:
        (outcome,) = await self.publish_many(topic, [(key, value)])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def publish_many(
        self, topic: str, records: Sequence[tuple[bytes, bytes]]
    ) -> list[Acknowledgement | BaseException]:
        """Each (key, value)'s acknowledgement, in order, or why it has none: `BrokerUnavailable`
        when the broker did not acknowledge within the timeout, `RecordTooLarge` for a record over the
        producer's or the broker's size limit (the others go on), any other error as raised.

        The records go to the producer together and share one timeout, with no task of their own:
        a task and a timer per record (`wait_for` under `gather`) cost capture 14-22 µs per record.
        A record not acknowledged in time may still reach the broker; the sender's retry carries
        the same event id, which every consumer treats as a duplicate."""
        try:
            producer = await self._ensure_producer()
        except BrokerUnavailable as exc:
            return [exc for _ in records]
        handed: list[asyncio.Future[Any] | BaseException] = []
        try:
            async with asyncio.timeout(self._timeout):
                for key, value in records:
                    try:
                        handed.append(await producer.send(topic, value=value, key=key))
                    except MessageSizeTooLargeError:  # raised by the producer before it is sent
                        handed.append(RecordTooLarge(record_size(key, value), self._max_record_bytes))
                    except (KafkaError, OSError) as exc:
                        handed.append(_unavailable(exc))
                    except Exception as exc:  # this record's own fault (the caller raises it)
                        handed.append(exc)
                futures = [f for f in handed if isinstance(f, asyncio.Future)]
                if futures:
                    await asyncio.wait(futures)
        except TimeoutError:
            pass
        outcomes = [_outcome(f, record) for f, record in zip(handed, records, strict=False)]
        return outcomes + [
            BrokerUnavailable(f"not handed to the producer within {self._timeout} s")
            for _ in records[len(handed) :]
        ]

    async def reachable(self) -> bool:
        try:
            producer = await self._ensure_producer()
            async with asyncio.timeout(self._timeout):
                await producer.client.fetch_all_metadata()
        except (BrokerUnavailable, KafkaError, OSError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _unavailable(exc: BaseException) -> BrokerUnavailable:
    return BrokerUnavailable(str(exc) or type(exc).__name__)


def _outcome(
    handed: asyncio.Future[Any] | BaseException, record: tuple[bytes, bytes]
) -> Acknowledgement | BaseException:
    """A record's acknowledgement, or its error (Kafka's and the network's as `BrokerUnavailable`, but
    the broker's MESSAGE_TOO_LARGE, a topic's `max.message.bytes` below ours, as `RecordTooLarge`)."""
    if isinstance(handed, BaseException):
        return handed
    if not handed.done():  # not acknowledged within the timeout; its error, if any, is dropped
        handed.add_done_callback(_retrieve)
        return BrokerUnavailable("the broker did not acknowledge in time")
    exc = handed.exception()
    if exc is None:
        ack: Acknowledgement = handed.result()
        return ack
    if isinstance(exc, MessageSizeTooLargeError):
        return RecordTooLarge(record_size(*record), None)
    return _unavailable(exc) if isinstance(exc, KafkaError | OSError) else exc


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a late record's outcome as seen, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
