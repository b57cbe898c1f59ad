"""A plain aiokafka consumer beside a service's main work, with its own consumer group.

Why not a faust agent: faust waits for every event an agent has started before it rebalances or
stops, without a limit, so an agent that retries an outside system (an SMTP server that is down)
would hold the whole worker. This loop holds only itself: it commits after each batch is handled,
and when handling outlasts the group's poll interval the broker moves its partitions on, the
commit fails, and the loop restarts from the last commit (handlers are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.runtime.cancellation import honour_cancel
from services.runtime.health import Flag
from services.runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

Handler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


async def consume_forever(
    settings: ServiceSettings,
    topic: str,
    group_id: str,
    handle: Handler,
    *,
    max_records: int = 200,
    running: Flag | None = None,
    lags: dict[tuple[str, int], int] | None = None,
) -> None:
    """Hand every record of `topic` to `handle` once per group, batch by batch, until cancelled.

    At-least-once: a failure restarts from the last commit after a doubling back-off. `running`
    (a readiness check) is set while the consumer is connected; `lags` gets the records of each
    assigned partition not yet handled, before each batch is handled (StreamService reports them
    as `leadpipe_consumer_lag`, so a handler that waits shows as lag)."""
    session_ms = int(settings.broker_session_timeout * 1000)
    delay = 1.0
    while True:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(500, session_ms // 6),
            metadata_max_age_ms=5000,  # notice the topic soon when the service starts before it exists
        )
        try:
            await consumer.start()
            if running is not None:
                running.set()
            while True:
                honour_cancel()  # a stop that a handler's library swallowed still ends the loop
                batches = await consumer.getmany(timeout_ms=1000, max_records=max_records)
                if lags is not None:
                    await _record_lags(consumer, batches, lags)
                for batch in batches.values():
                    await handle(batch)
                if batches:
                    await consumer.commit()
                delay = 1.0
        except Exception as exc:  # anything but cancellation: keep consuming, from the last commit
            if running is not None:
                running.clear()
            log.warning("%s consumer stopped (%s); restarting in %.0fs", group_id, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()


async def _record_lags(
    consumer: AIOKafkaConsumer,
    batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    lags: dict[tuple[str, int], int],
) -> None:
    assigned = consumer.assignment()
    topics = consumer.subscription()  # `lags` may be shared with a consumer of another topic
    for key in [key for key in lags if key[0] in topics and TopicPartition(*key) not in assigned]:
        del lags[key]
    for tp in assigned:
        end = consumer.highwater(tp)
        if end is None:  # no fetch answered for it yet
            continue
        batch = batches.get(tp)
        start = batch[0].offset if batch else await consumer.position(tp)
        lags[(tp.topic, tp.partition)] = max(0, end - start)
