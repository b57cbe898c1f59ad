"""The services' partitioner places every key where Kafka's own does (services/runtime/partitioner.py):
a lead's records from any producer must meet on one partition."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.partitioner import KafkaPartitioner, murmur2


def signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


@pytest.mark.parametrize(
    ("data", "java"),
    [  # Kafka's own UtilsTest.testMurmur2: what the Java client computes
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_the_java_clients(data: bytes, java: int) -> None:
    assert signed(murmur2(data)) == java


@given(st.binary(max_size=200))
def test_murmur2_matches_aiokafkas_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF


@given(
    keys=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=30),
    partitions=st.lists(st.integers(1, 64), min_size=1, max_size=4),
    remembered=st.integers(1, 8),
)
def test_every_key_goes_where_aiokafkas_default_puts_it(
    keys: list[bytes], partitions: list[int], remembered: int
) -> None:
    """Also once its memory of hashes fills and empties, and when a topic's partition count differs
    between calls (a remembered hash, not a remembered partition)."""
    ours, theirs = KafkaPartitioner(remembered_keys=remembered), DefaultPartitioner()
    for count in partitions:
        every = list(range(count))
        for key in keys * 2:
            assert ours(key, every, every) == theirs(key, every, every)


def test_a_record_without_a_key_goes_to_an_available_partition_or_any() -> None:
    partitioner = KafkaPartitioner()
    assert {partitioner(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {partitioner(None, [0, 1, 2, 3], []) for _ in range(200)} == {0, 1, 2, 3}
