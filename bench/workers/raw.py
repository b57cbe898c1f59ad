"""The raw aiokafka passthrough worker: the client's limit, with no framework in between."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from bench import worker_args
from bench.workload import transform

DEFAULTS: dict[str, Any] = {"max_records": 2000, "linger_ms": 5, "max_batch_size": 256 * 1024}


Send = Callable[[AIOKafkaProducer, ConsumerRecord[bytes, bytes]], Awaitable[list["asyncio.Future[Any]"]]]


async def batched_loop(args: worker_args.WorkerArgs, send: Send) -> None:
    """Consume a batch, `send` what each record makes, wait for the batch's acks, let offsets commit."""
    options = {**DEFAULTS, **args.options}
    consumer = AIOKafkaConsumer(
        args.source,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        max_poll_records=options["max_records"],
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        linger_ms=options["linger_ms"],
        max_batch_size=options["max_batch_size"],
    )
    await consumer.start()
    await producer.start()
    in_flight: list[asyncio.Future[Any]] = []
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=options["max_records"])
            acks = []
            for records in batches.values():
                for record in records:
                    acks += await send(producer, record)
            # One batch in flight: wait for the previous batch's acks while this one is on the wire.
            if in_flight:
                await asyncio.gather(*in_flight)
            in_flight = acks
    finally:
        await producer.stop()
        await consumer.stop()


async def passthrough(args: worker_args.WorkerArgs) -> None:
    """Each record transformed and sent to the sink."""

    async def send(
        producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes]
    ) -> list[asyncio.Future[Any]]:
        return [await producer.send(args.sink, value=transform(record.value), key=record.key)]

    await batched_loop(args, send)


if __name__ == "__main__":
    asyncio.run(passthrough(worker_args.parse()))
