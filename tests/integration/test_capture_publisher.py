"""Capture's publisher on the real broker: a batch's records are acknowledged one by one, in order,
each on the partition Kafka's default partitioner gives its key, and a broker that does not answer
gives every record `BrokerUnavailable` instead of a hang."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from services.capture.publisher import BrokerUnavailable, KafkaPublisher
from services.devstack.broker import EmbeddedBroker
from services.devstack.processes import free_port
from tests.kafka import consume_until

pytestmark = pytest.mark.integration


async def _topic(bootstrap: str, name: str, partitions: int) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def test_each_record_gets_its_own_acknowledgement_in_order(broker: EmbeddedBroker, suffix: str) -> None:
    topic = await _topic(broker.bootstrap_servers, f"publisher{suffix}", partitions=4)
    records = [(f"lead-{n % 13}".encode(), f"value-{n}".encode()) for n in range(40)]
    publisher = KafkaPublisher(broker.bootstrap_servers, timeout=10)
    try:
        acks = await publisher.publish_many(topic, records)
    finally:
        await publisher.close()

    assert not [ack for ack in acks if isinstance(ack, BaseException)]
    stored = await consume_until(broker.bootstrap_servers, topic, lambda got: len(got) >= len(records))
    where = {(r.partition, r.offset): (r.key, r.value) for r in stored}
    assert [where[(ack.partition, ack.offset)] for ack in acks] == records  # type: ignore[union-attr]
    for key in {key for key, _ in records}:  # one key's records keep their order on its partition
        offsets = [ack.offset for (k, _), ack in zip(records, acks, strict=True) if k == key]  # type: ignore[union-attr]
        assert offsets == sorted(offsets)
    kafkas = DefaultPartitioner()  # each key on the partition any Kafka producer gives it
    assert [ack.partition for ack in acks] == [kafkas(k, [0, 1, 2, 3], [0, 1, 2, 3]) for k, _ in records]  # type: ignore[union-attr]


async def test_a_record_the_producer_refuses_fails_alone(broker: EmbeddedBroker, suffix: str) -> None:
    topic = await _topic(broker.bootstrap_servers, f"publisher{suffix}", partitions=1)
    publisher = KafkaPublisher(broker.bootstrap_servers, timeout=10)
    records = [(b"a", b"first"), (b"b", "not bytes"), (b"c", b"third")]
    try:
        acks = await publisher.publish_many(topic, records)  # type: ignore[arg-type]
    finally:
        await publisher.close()

    assert isinstance(acks[1], Exception) and not isinstance(acks[1], BrokerUnavailable)
    assert not isinstance(acks[0], BaseException) and not isinstance(acks[2], BaseException)
    stored = await consume_until(broker.bootstrap_servers, topic, lambda got: len(got) >= 2)
    assert [r.value for r in stored] == [b"first", b"third"]


async def test_a_frozen_broker_makes_every_record_unavailable(tmp_path: Path, suffix: str) -> None:
    with EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log") as frozen:
        assert frozen.process is not None
        topic = await _topic(frozen.bootstrap_servers, f"publisher{suffix}", partitions=1)
        publisher = KafkaPublisher(frozen.bootstrap_servers, timeout=1)
        try:
            assert not isinstance((await publisher.publish_many(topic, [(b"k", b"warm")]))[0], BaseException)
            os.kill(frozen.process.pid, signal.SIGSTOP)
            try:
                acks = await publisher.publish_many(topic, [(b"k", f"v{n}".encode()) for n in range(3)])
            finally:
                os.kill(frozen.process.pid, signal.SIGCONT)
            with pytest.raises(BrokerUnavailable):
                os.kill(frozen.process.pid, signal.SIGSTOP)
                try:
                    await publisher.publish(topic, b"k", b"single")
                finally:
                    os.kill(frozen.process.pid, signal.SIGCONT)
        finally:
            await publisher.close()

    assert len(acks) == 3
    assert all(isinstance(ack, BrokerUnavailable) for ack in acks)


async def test_no_broker_makes_every_record_unavailable() -> None:
    publisher = KafkaPublisher(f"127.0.0.1:{free_port()}", timeout=0.5)
    acks = await publisher.publish_many("anything", [(b"k", b"v1"), (b"k", b"v2")])
    await publisher.close()
    assert len(acks) == 2
    assert all(isinstance(ack, BrokerUnavailable) for ack in acks)
