"""The benchmark harness's pure helpers: counters read from /metrics, backlog windows, latency
percentiles, py-spy summaries, load pacing and the state case's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest

from bench.__main__ import lead_counts, parse
from bench.cases.domain import ENRICH_STEPS, STEPS, EnrichRun, score_records
from bench.cases.pipeline import batch_means, batch_probes, cores_busy
from bench.cases.score_recovery import changelog_topic, stored_states
from bench.cases.score_state import as_expected, changelog_reads, probe_indexes, restored_figure, size_label
from bench.cases.speed_to_lead import HandRaisers, by_thirds, hop_latencies, slowest
from bench.latency import LatencySummary
from bench.profile import package_of, parse_frame, record_argv, summarise
from bench.prom import sample_sum
from bench.records import ScoreOracle, enriched_stream, interactions, one_event_per_lead
from bench.service_run import Held, backlog_done, memory_figures
from bench.stack import Snapshot
from bench.windows import backlog_window, first_at_least, last_change, stable_for
from bench.workers.loadgen import chunks, due_offset
from schemas.enriched import EnrichedInteraction
from services.enrich.domain import LeadState as EnrichState
from services.runtime.codec import encode
from services.runtime.memory import MemoryCollector, TableKeysCollector
from services.runtime.metrics import batch_metrics, common_metrics
from services.score.app import create_app
from services.score.settings import ScoreSettings
from services.score.state import LeadState


def test_sample_sum_reads_a_counter_by_labels() -> None:
    registry = CollectorRegistry()
    events = Counter("leadpipe_events_in", "in", ["service", "topic"], registry=registry)
    events.labels("score", "leads.enriched.x").inc(7)
    events.labels("score", "leads.sales-activity.x").inc(2)
    text = generate_latest(registry).decode()
    assert sample_sum(text, "leadpipe_events_in_total", topic="leads.enriched.x") == 7
    assert sample_sum(text, "leadpipe_events_in_total", service="score") == 9
    assert sample_sum(text, "leadpipe_events_in_total", topic="nothing") == 0
    assert sample_sum(text, "leadpipe_events_out_total") == 0


def test_last_change_and_stable_for() -> None:
    points = [(0.0, 0.0), (1.0, 5.0), (2.0, 9.0), (3.0, 9.0), (4.5, 9.0)]
    assert first_at_least(points, 9) == 2
    assert first_at_least(points, 10) is None
    assert last_change(points) == 2
    assert stable_for(points, 2.5)
    assert not stable_for(points, 2.6)
    assert not stable_for([], 0.0)
    with pytest.raises(ValueError):
        last_change([])


def test_backlog_window_ends_when_the_last_output_settles() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    inputs = list(zip(times, [0, 0, 40, 100, 100, 100], strict=True))
    outputs = [list(zip(times, [0, 0, 10, 30, 35, 35], strict=True))]
    assert backlog_window(inputs, outputs, 100) == (2, 4)
    assert backlog_window(inputs, [], 100) == (2, 3)
    assert backlog_window(inputs, outputs, 101) is None
    assert backlog_window(inputs, outputs, 100, not_before=2.5) == (3, 4)


def test_a_run_is_not_done_while_an_effect_lags_behind_its_output() -> None:
    """A webhook post counted after its hand-off: a run whose posts have not caught up with its
    hand-offs goes on even when nothing has moved for a while (the posts' consumer still joining)."""

    def at(t: float, consumed: float, handoffs: float, posts: float) -> Snapshot:
        counters = {"in": consumed, "out:handoffs": handoffs, "out:posts": posts}
        return Snapshot(at=t, counters=counters, cpu={}, broker_cpu=None)

    done = backlog_done(["in"], ["out:handoffs", "out:posts"], 10, behind=[("out:posts", "out:handoffs")])
    waiting = [at(0, 10, 5, 0), at(1, 10, 5, 0), at(5, 10, 5, 0)]
    assert not done(waiting)
    assert done([*waiting, at(6, 10, 5, 5), at(9, 10, 5, 5)])
    assert backlog_done(["in"], ["out:handoffs", "out:posts"], 10)(waiting)  # without it: done too soon


def test_cores_busy_sums_every_worker_and_the_broker_over_the_wall_clock() -> None:
    start = Snapshot(at=10.0, counters={}, cpu={"enrich": 1.0, "score": 2.0}, broker_cpu=5.0)
    end = Snapshot(at=14.0, counters={}, cpu={"enrich": 4.0, "score": 4.2}, broker_cpu=6.2)
    assert cores_busy(start, end, 2) == "workers 1.30 + broker 0.30 = 1.60 of 2"
    unknown = Snapshot(at=14.0, counters={}, cpu=end.cpu, broker_cpu=None)
    assert cores_busy(start, unknown, 2) == "workers 1.30 of 2"


def test_batch_means_read_the_services_own_batch_metrics() -> None:
    """The probes name the series `run_batches` reports (services/runtime/metrics.py): the means
    come from two snapshots of a real registry's exposition."""
    common = common_metrics("score")
    metrics = batch_metrics("score", common.registry)
    probes = batch_probes(["score"])

    def snap(at: float) -> Snapshot:
        text = common.exposition().decode()
        counters = {p.name: sample_sum(text, p.sample, service="score", **p.labels) for p in probes}
        return Snapshot(at=at, counters=counters, cpu={}, broker_cpu=None)

    metrics.records.observe(500)  # before the window: left out
    start = snap(1.0)
    for records, handle, commit in ((60, 0.020, 0.010), (20, 0.010, 0.014)):
        metrics.records.observe(records)
        metrics.handling.observe(handle)
        metrics.commit.observe(commit)
    # two batches over 0.25 s of wall clock: 54 ms of handling and committing, 22% of it
    assert batch_means(start, snap(1.25), ["score"]) == "score 40 / 15.0 / 12.0 / 22%"
    assert batch_means(start, start, ["score"]) == "score 0 / 0.0 / 0.0 / 0%"  # no batch: no division by 0


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(1, 2000))
def test_backlog_window_is_ordered_and_inside_the_series(steps: list[int], total: int) -> None:
    values, running = [], 0
    for step in steps:
        running += step
        values.append(float(running))
    inputs = [(float(i), v) for i, v in enumerate(values)]
    window = backlog_window(inputs, [inputs], total)
    if window is None:
        assert values[-1] < total or values[-1] == 0
    else:
        start, end = window
        assert 0 <= start <= end < len(values)
        assert values[end] >= total


def test_latency_summary() -> None:
    summary = LatencySummary.of([float(i) for i in range(1, 101)])
    assert (summary.count, summary.p50, summary.max) == (100, 50.5, 100.0)
    assert summary.p99 == pytest.approx(99.01)
    assert LatencySummary.of([0.25]).text() == "0.250 / 0.250 / 0.250 / 0.250 (n=1)"
    assert LatencySummary.of([12.0, 1234.5]).text().startswith("623.2 / ")
    with pytest.raises(ValueError):
        LatencySummary.of([])


RAW = """\
<module> (services/score/__main__.py:15);run (faust/worker.py:10);_drain (faust/transport/consumer.py:5) 6
<module> (services/score/__main__.py:15);run (faust/worker.py:10);score (services/score/agents.py:60);\
model_validate_json (pydantic/main.py:600) 3
<module> (services/score/__main__.py:15);score (services/score/agents.py:61) 1
<module> (services/score/__main__.py:15);_run_once (asyncio/base_events.py:1);select (selectors.py:468) 10
not a sample line
"""


def test_profile_summary_by_package_and_function() -> None:
    summary = summarise(RAW)
    assert summary.samples == 10
    assert summary.waiting == pytest.approx(0.5)
    assert dict(summary.self_by_package) == pytest.approx(
        {"faust": 0.6, "pydantic": 0.3, "services.score": 0.1}
    )
    inclusive = dict(summary.total_by_function)
    assert inclusive["score (services.score)"] == pytest.approx(0.4)
    assert inclusive["run (faust)"] == pytest.approx(0.9)
    assert "<module> (services.score)" not in inclusive
    assert summary.lines()[1].startswith("self time by package: faust 60%")
    assert summarise("").samples == 0


def test_py_spy_samples_the_interpreter_lock_holder_only_when_asked() -> None:
    out = Path("score.pyspy.txt")
    plain = record_argv("py-spy", 42, 15, out)
    assert plain[:3] == ["py-spy", "record", "--pid"] and "42" in plain and "--gil" not in plain
    assert record_argv("py-spy", 42, 15, out, gil=True) == [*plain, "--gil"]
    assert parse(["--profile", "15", "--profile-gil"]).profile_gil
    assert not parse(["--profile", "15"]).profile_gil


@pytest.mark.parametrize(
    ("file", "package"),
    [
        ("/w/.venv/lib/python3.11/site-packages/faust/streams.py", "faust"),
        ("aiokafka/producer/producer.py", "aiokafka"),
        ("/usr/lib/python3.11/asyncio/base_events.py", "asyncio"),
        ("/work/main/services/enrich/agents.py", "services.enrich"),
        ("typing.py", "typing"),
        ("<frozen importlib._bootstrap>", "other"),
    ],
)
def test_package_of(file: str, package: str) -> None:
    assert package_of(file) == package


def test_parse_frame_drops_the_line() -> None:
    assert parse_frame("Stream._py_aiter (faust/streams.py:812)") == ("Stream._py_aiter", "faust/streams.py")
    assert parse_frame("odd") == ("odd", "")


def test_load_pacing() -> None:
    assert [due_offset(i, 50, 1000.0) for i in range(3)] == [0.0, 0.05, 0.1]
    assert due_offset(7, 100, 0.0) == 0.0
    assert chunks(list(range(5)), 2) == [[0, 1], [2, 3], [4]]


def test_state_case_helpers() -> None:
    assert [size_label(n) for n in (999, 2500, 100_000, 1_000_000)] == ["999", "2.5k", "100k", "1m"]
    assert probe_indexes(5) == [0, 1, 2, 3, 4]
    spread = probe_indexes(100_000)
    assert len(spread) == 20 and spread[0] == 0 and spread[-1] == 99_999
    assert lead_counts("", 5000) == (5000,)
    assert lead_counts("100000,1_000_000", 5000) == (100_000, 1_000_000)
    with pytest.raises(ValueError):
        lead_counts("0", 5)


def test_a_lost_state_is_not_as_expected() -> None:
    expected = {("lifecycle", "iql", "mql"): 80.0, ("temperature", "cold", "hot"): 80.0}
    assert as_expected({("lifecycle", "iql", "mql"): 79.99, ("temperature", "cold", "hot"): 80.0}, expected)
    assert not as_expected(
        {("lifecycle", "raw", "mql"): 70.0, ("temperature", "cold", "hot"): 70.0}, expected
    )
    assert not as_expected(
        {("lifecycle", "iql", "mql"): 70.0, ("temperature", "cold", "hot"): 70.0}, expected
    )


def test_the_recovery_case_writes_the_changelog_score_reads() -> None:
    """The case bypasses the worker: its topic must be the one the score app's table restores from,
    and each record the state score's domain stores after the lead's form fill."""
    service = create_app(ScoreSettings(topic_suffix=".t1"))
    (table,) = [t for t in service.tables if t.name == "lead-scores"]
    assert changelog_topic(".t1") == table.changelog_topic.get_topic_name()

    events = list(one_event_per_lead(30, prefix="t"))
    kept: list[EnrichedInteraction] = []
    written = list(stored_states(iter(events), {0, 29}, kept))
    assert kept == [events[0], events[29]]
    oracle = ScoreOracle.default()
    for event, (key, value) in zip(events, written, strict=True):
        oracle.apply(event)
        assert key == event.lead_id.encode()
        assert LeadState.loads(value) == oracle.states[event.lead_id]


def test_the_domain_case_does_scores_work_on_every_record() -> None:
    events = enriched_stream(400, leads=40)
    stored: dict[str, bytes] = {}
    clock = score_records([e.model_dump_json().encode() for e in events], stored)
    oracle = ScoreOracle.default()
    for event in events:
        oracle.apply(event)
    assert {lead: LeadState.loads(raw) for lead, raw in stored.items()} == oracle.states
    assert set(clock.seconds) == set(STEPS)
    assert clock.total == sum(clock.seconds.values())


def test_the_enrich_domain_case_handles_every_interaction_and_its_inbox() -> None:
    """Each interaction ends up in the `seen` of the lead it belongs to, and every anonymous lead that
    became known was merged: the inbox records (interactions for another lead, alias requests and
    merges) were all handled."""
    run = EnrichRun()
    events = interactions(600)
    for interaction in events:
        run.interaction(encode(interaction))
    states = {lead: EnrichState.model_validate_json(raw) for lead, raw in run.stored.items()}
    seen = {event_id for state in states.values() for event_id in state.seen}
    assert {interaction.event_id for interaction in events} <= seen
    aliased = {lead: state.alias_to for lead, state in states.items() if state.alias_to}
    assert aliased, "the demo traffic has anonymous visitors who fill a form"
    assert all(anonymous in states[known].merged for anonymous, known in aliased.items())
    assert run.records >= len(events)
    assert set(run.clock.seconds) == set(ENRICH_STEPS)


def test_hop_latencies_split_speed_to_lead_by_stage() -> None:
    found = HandRaisers(
        accepted_at={"a": 10.0, "b": 20.0, "lost": 30.0}, handed_off_at={"a": 10.5, "b": 21.0}
    )
    arrived = {
        "leads.interactions": {"a": 9.99, "b": 19.99, "lost": 29.99},
        "leads.enriched": {"a": 10.1, "b": 20.2},
        "leads.stage-changes": {"a": 10.3, "b": 20.6},
    }
    hops = hop_latencies(found, arrived)
    assert list(hops) == [
        "-> leads.interactions",
        "-> leads.enriched",
        "-> leads.stage-changes",
        "-> handoffs",
    ]
    assert hops["-> leads.interactions"].count == 3  # the lead not handed off still counts where it got
    assert hops["-> leads.enriched"].count == 2
    assert hops["-> handoffs"].max == pytest.approx(0.4)
    assert hops["-> leads.enriched"].max == pytest.approx(0.21)


def test_speed_to_lead_splits_hand_raisers_by_when_capture_accepted_them() -> None:
    found = HandRaisers(
        accepted_at={"cold": 100.5, "edge": 102.0, "warm": 110.0, "lost": 111.0},
        handed_off_at={"cold": 101.2, "edge": 102.1, "warm": 110.05},
    )
    assert sorted(found.latencies()) == pytest.approx([0.05, 0.1, 0.7])
    assert found.latencies(accepted_before=102.0) == pytest.approx([0.7])
    assert sorted(found.latencies(102.0)) == pytest.approx([0.05, 0.1])


def test_the_changelog_reads_are_summed_from_the_worker_log(tmp_path: Path) -> None:
    log = tmp_path / "score-1.log"
    log.write_text(
        "[09:00:00] restored 700000 records of score-changelog in 20.0 s (35000/s)\n"
        "[09:00:01] something else, 5 records\n"
        "[09:00:02] restored 300000 records of score-changelog in 8.5 s (35294/s)\n"
    )
    assert changelog_reads(log) == (1_000_000, 28.5)
    assert restored_figure(log) == "1,000,000; 28.5; 35,088"
    log.write_text("no table restored anything\n")
    assert restored_figure(log) == "none"


def test_memory_figures_per_table_key_grown_since_ready() -> None:
    figures = memory_figures("score", Held(resident=100e6, keys=1_000), Held(resident=160e6, keys=21_000))
    assert figures == {
        "score: resident MB, table keys at the end": "160, 21,000",
        "score: resident bytes per table key since ready": "3,000",
    }
    # no keys added (a stateless worker, or nothing consumed): no per-key figure to divide out
    assert list(memory_figures("route", Held(90e6, 0), Held(95e6, 0))) == [
        "route: resident MB, table keys at the end"
    ]


def test_a_workers_memory_is_read_from_its_exposition() -> None:
    registry = CollectorRegistry()
    registry.register(MemoryCollector("score", resident=lambda: 123_000_000))
    registry.register(TableKeysCollector("score", lambda: [("lead-scores", {b"a": b"1"}), ("erased", {})]))
    text = generate_latest(registry).decode()
    assert sample_sum(text, "leadpipe_memory_resident_bytes") == 123_000_000
    assert sample_sum(text, "leadpipe_table_keys") == 1


def test_the_slowest_hand_raisers_say_when_they_came_and_where_they_waited() -> None:
    found = HandRaisers(
        accepted_at={"fast": 101.0, "slow": 112.0, "slower": 112.3, "lost": 113.0, "unseen": 114.0},
        handed_off_at={"fast": 101.1, "slow": 112.3, "slower": 112.7, "unseen": 114.2},
    )
    arrived = {
        "leads.interactions": {"fast": 101.0, "slow": 112.0, "slower": 112.3, "lost": 113.0},
        "leads.enriched": {"fast": 101.03, "slow": 112.2, "slower": 112.35},
        "leads.stage-changes": {"fast": 101.06, "slow": 112.25, "slower": 112.6},
    }
    assert slowest(found, arrived, since=100.0, count=3) == (
        "+12.3: 400 = 0 + 50 + 250 + 100; +12.0: 300 = 0 + 200 + 50 + 50; +14.0: 200 = ? + ? + ? + ?"
    )
    assert slowest(HandRaisers(), arrived, since=100.0) == "none"


def test_hand_raisers_are_summed_up_by_third_of_the_load() -> None:
    found = HandRaisers(
        accepted_at={"a": 100.5, "b": 101.0, "d": 108.0, "e": 108.5, "after": 109.0, "lost": 108.7},
        handed_off_at={"a": 100.6, "b": 101.3, "d": 108.2, "e": 108.6, "after": 112.0},
    )
    assert by_thirds(found, since=100.0, duration=9.0) == "0.200 / 0.300 (n=2); none; 0.150 / 0.200 (n=2)"
