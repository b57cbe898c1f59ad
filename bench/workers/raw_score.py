"""Score's domain on a plain aiokafka loop: how fast score could be without faust's per-record path.

The same work per record as the score service's agent: decode the enriched interaction (trusted,
as score does), apply score's pure domain to the lead's state, publish its stage changes, and write
the new state to a changelog (the sink: one record per input, so the harness counts inputs). What it
leaves out is what faust adds: its consumer thread hand-over, per-event bookkeeping, the table
layer. State lives in a dict of decoded states; a batch's sends are acknowledged before the next
batch's offsets commit (`bench.workers.raw.batched_loop`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from bench import worker_args
from bench.workers.raw import batched_loop
from schemas.base import TRUSTED_CONTEXT
from schemas.views.score import EnrichedView
from services.runtime.codec import encode
from services.runtime.topics import ensure_topics
from services.score import domain
from services.score.rules import DEFAULT_RULES_FILE, load_rules
from services.score.state import LeadState


def changes_topic(sink: str) -> str:
    return f"{sink}.stage-changes"


async def score_loop(args: worker_args.WorkerArgs) -> None:
    await ensure_topics(args.bootstrap, [changes_topic(args.sink)], args.partitions, give_up_after=30)
    rules = load_rules(DEFAULT_RULES_FILE)
    states: dict[str, LeadState] = {}

    async def send(
        producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes]
    ) -> list[asyncio.Future[Any]]:
        event = EnrichedView.model_validate_json(record.value, context=TRUSTED_CONTEXT)
        update = domain.apply_interaction(states.get(event.lead_id), event, rules)
        acks = [
            await producer.send(changes_topic(args.sink), encode(c), key=record.key) for c in update.changes
        ]
        states[event.lead_id] = update.state
        acks.append(await producer.send(args.sink, update.state.dumps(), key=record.key))
        return acks

    await batched_loop(args, send)


if __name__ == "__main__":
    asyncio.run(score_loop(worker_args.parse()))
