"""A poison record on every input topic goes to leads.dlq, once per service that reads the topic, with
its reason, origin and payload; the good records around it are processed as if it was not there.
Nothing else goes wrong in this run, so it is also the control: every effect exactly once.

Each poison record is keyed by a lead of the run's own workload and written before that lead's
events, so it sits in the same partition ahead of them: a service stuck on it would lose them.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import TopicName
from tests.faults.conftest import Scale, new_run, record
from tests.faults.stack import FaultStack

pytestmark = pytest.mark.e2e

# topic -> (value, reason every reader must give, the services that read the topic)
POISON: dict[str, tuple[bytes, str, frozenset[str]]] = {
    TopicName.INTERACTIONS: (b'{"event_id": "p1", "type": ', "invalid_json", frozenset({"enrich"})),
    TopicName.ENRICHED: (
        b'{"event_id": "p2", "lead_id": 7}',
        "validation_failed",
        frozenset({"score", "nurture"}),
    ),
    TopicName.STAGE_CHANGES: (b"", "empty_value", frozenset({"route", "nurture"})),
    TopicName.SALES_ACTIVITY: (
        b'{"record_type": "sales_activity", "activity": "teleported"}',
        "validation_failed",
        frozenset({"score", "route", "nurture"}),
    ),
    TopicName.PRIVACY: (
        b"\xff\xfe not json",
        "invalid_json",
        frozenset({"enrich", "score", "route", "nurture"}),
    ),
    TopicName.NURTURE_OUTBOX: (b"[1, 2, 3]", "validation_failed", frozenset({"nurture"})),
    # read by route's CRM delivery, which posts the team's hand-offs to its webhook
    TopicName.HANDOFFS: (b'{"record_type": "handoff"}', "validation_failed", frozenset({"route"})),
}


async def test_poison_on_every_input_topic_is_dead_lettered_and_the_rest_flows(
    stack: FaultStack, scale: Scale
) -> None:
    await stack.ensure_running()
    async with new_run(stack, scale, "poison record on each input topic") as run:
        # one poison record per topic and lead, for enough leads to reach every partition
        keys = [lead.lead_id for lead in run.leads[: min(len(run.leads), 8)]]
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            for topic, (value, _, _) in POISON.items():
                for key in keys:
                    await producer.send_and_wait(topic, key=key.encode(), value=value)
        finally:
            await producer.stop()
        expected = {
            (service, topic, key)
            for topic, (_, _, readers) in POISON.items()
            for service in readers
            for key in keys
        }
        run.start_sending()
        report = await run.finish()
        letters = run.dead_letters()
    report.notes.append(f"{len(keys) * len(POISON)} poison records, {len(letters)} dead letters")
    record(report)
    seen = {(d["service"], d["origin"]["topic"], d["origin"]["key"]) for d in letters}
    assert seen == expected, (sorted(expected - seen), sorted(seen - expected))
    for letter in letters:
        value, reason, _ = POISON[letter["origin"]["topic"]]
        assert letter["reason"] == reason, letter
        assert letter["detail"], letter
        assert letter["payload"] == value.decode("utf-8", errors="replace"), letter
    assert report.ok, report.details()
    assert report.repeats == 0, f"nothing crashed, so nothing may be replayed\n{report.details()}"
