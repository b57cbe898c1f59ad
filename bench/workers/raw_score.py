"""Score's domain on a plain aiokafka loop: how fast score could be without faust's per-record path.

The same work per record as the score service's agent: decode the enriched interaction (trusted,
as score does), apply score's pure domain to the lead's state, publish its stage changes, and write
the new state to a changelog (the sink: one record per input, so the harness counts inputs). What it
leaves out is what faust adds: its consumer thread hand-over, per-event bookkeeping, the table
layer. State lives in a dict of decoded states; a batch's sends are acknowledged before the next
batch's offsets commit, as in `bench.workers.raw`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import worker_args
from bench.workers.raw import DEFAULTS
from schemas.base import TRUSTED_CONTEXT
from schemas.enriched import EnrichedInteraction
from services.runtime.codec import encode
from services.runtime.topics import ensure_topics
from services.score import domain
from services.score.rules import DEFAULT_RULES_FILE, load_rules
from services.score.state import LeadState


def changes_topic(sink: str) -> str:
    return f"{sink}.stage-changes"


async def score_loop(args: worker_args.WorkerArgs) -> None:
    options = {**DEFAULTS, **args.options}
    await ensure_topics(args.bootstrap, [changes_topic(args.sink)], args.partitions, give_up_after=30)
    rules = load_rules(DEFAULT_RULES_FILE)
    states: dict[str, LeadState] = {}
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
                    event = EnrichedInteraction.model_validate_json(record.value, context=TRUSTED_CONTEXT)
                    update = domain.apply_interaction(states.get(event.lead_id), event, rules)
                    for change in update.changes:
                        acks.append(
                            await producer.send(changes_topic(args.sink), encode(change), key=record.key)
                        )
                    states[event.lead_id] = update.state
                    acks.append(await producer.send(args.sink, update.state.dumps(), key=record.key))
            if in_flight:
                await asyncio.gather(*in_flight)
            in_flight = acks
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(score_loop(worker_args.parse()))
