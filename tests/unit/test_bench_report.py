"""The benchmark's pure parts: percentiles, folding repeated runs, the table, case selection."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.case import CaseResult, select
from bench.records import enriched_stream, record
from bench.report import format_table, percentile, summarise
from bench.workload import events, transform

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


def result(case: str, events_per_second: float, *, error: str | None = None) -> CaseResult:
    return CaseResult(
        case=case,
        description=f"{case} loop",
        events=10_000,
        seconds=10_000 / events_per_second if events_per_second else 0.0,
        cpu_seconds=0.5,
        broker_cpu_seconds=0.1,
        error=error,
    )


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


@given(st.lists(finite, min_size=1, max_size=50), st.floats(min_value=0, max_value=100))
def test_percentile_lies_within_the_values_and_grows_with_q(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert min(values) <= p <= max(values)
    assert percentile(values, min(100.0, q + 1)) >= p


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_takes_the_median_rate_and_keeps_the_spread() -> None:
    runs = [result("raw.aiokafka", r) for r in (30_000.0, 36_000.0, 33_000.0)]
    [summary] = summarise(runs)
    assert summary.runs == 3
    assert summary.events_per_second == pytest.approx(33_000.0)
    assert (summary.min_events_per_second, summary.max_events_per_second) == (30_000.0, 36_000.0)
    assert summary.cpu_us_per_event == pytest.approx(50.0)
    assert summary.broker_cpu_us_per_event == pytest.approx(10.0)


def test_table_shows_rates_relative_to_raw_and_failures() -> None:
    runs = [
        result("raw.aiokafka", 40_000.0),
        result("faust.send", 4_000.0),
        result("quix.apply", 0.0, error="unavailable: quixstreams is not installed"),
    ]
    table = format_table(summarise(runs)).splitlines()
    assert table[0].startswith("| case |")
    assert len(table) == 5
    assert "| raw.aiokafka |" in table[2] and "40,000" in table[2] and "100%" in table[2]
    assert "| faust.send |" in table[3] and "4,000" in table[3] and "10%" in table[3]
    assert "failed: unavailable: quixstreams is not installed" in table[4]


def test_selection_by_name_or_family_keeps_registry_order() -> None:
    names = ["raw.aiokafka", "quix.apply", "faust.send", "faust.tuned"]
    assert select(names, None) == names
    assert select(names, "faust,raw") == ["raw.aiokafka", "faust.send", "faust.tuned"]
    assert select(names, "faust.tuned") == ["faust.tuned"]
    with pytest.raises(ValueError, match="fau"):
        select(names, "fau")


def test_workload_is_reproducible_and_about_250_bytes() -> None:
    first = list(events(200))
    assert first == list(events(200))
    sizes = [len(value) for _, value in first]
    assert 230 <= sum(sizes) / len(sizes) <= 270
    key, value = first[0]
    assert key.decode() in value.decode()
    assert b'"seen":true' in transform(value)


def test_the_passthrough_transform_reads_score_input_too() -> None:
    """`raw.enriched` runs the reference transform over score's enriched records."""
    (key, value), *_ = (record(e) for e in enriched_stream(3))
    doc = orjson.loads(transform(value))
    assert doc["seen"] is True
    assert doc["weight"] == len(key)
    assert {k: v for k, v in doc.items() if k not in ("seen", "weight")} == orjson.loads(value)
