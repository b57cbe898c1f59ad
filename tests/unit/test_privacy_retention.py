"""The retention index: the sweep gets exactly the leads quiet since the cutoff, each once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.privacy.policy import DEFAULT_POLICY_FILE, PrivacyConfigError, load_policy
from services.privacy.retention import ActivityIndex, decode_activity, encode_activity, should_record
from services.runtime.topic_config import DEFAULT_TOPICS_FILE
from services.score.app import create_app as create_score
from services.score.settings import ScoreSettings

leads = st.sampled_from([f"e-{i:024x}" for i in range(6)])
times = st.floats(min_value=0, max_value=1e6, allow_nan=False)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("touch"), leads, times),
        st.tuples(st.just("forget"), leads, st.just(0.0)),
        st.tuples(st.just("pop"), st.just(""), times),
    ),
    max_size=60,
)


@given(steps)
def test_index_agrees_with_a_plain_dict(script: list[tuple[str, str, float]]) -> None:
    index, model = ActivityIndex(), dict[str, float]()
    for action, lead, at in script:
        if action == "touch":
            index.touch(lead, at)
            model[lead] = max(at, model.get(lead, at))
        elif action == "forget":
            index.forget(lead)
            model.pop(lead, None)
        else:
            popped = index.pop_inactive(at)
            expected = {quiet for quiet, last in model.items() if last <= at}
            assert sorted(popped) == sorted(expected)
            assert len(popped) == len(set(popped))
            for quiet in popped:
                del model[quiet]
        assert len(index) == len(model)


def test_an_older_time_never_replaces_a_newer_one() -> None:
    index = ActivityIndex()
    index.touch("e-1", 100.0)
    index.touch("e-1", 50.0)
    assert index.pop_inactive(60.0) == []
    assert index.pop_inactive(100.0) == ["e-1"]


def test_pop_respects_the_limit_and_keeps_the_rest() -> None:
    index = ActivityIndex()
    for i in range(5):
        index.touch(f"e-{i}", float(i))
    assert len(index.pop_inactive(10.0, limit=2)) == 2
    assert len(index.pop_inactive(10.0)) == 3


@given(times, st.integers(min_value=0, max_value=255))
def test_activity_rows_round_trip(at: float, partition: int) -> None:
    assert decode_activity(encode_activity(at, partition)) == (at, partition)


def test_activity_is_stored_once_per_resolution() -> None:
    assert should_record(None, 10.0, 3600)
    assert not should_record(10.0, 3000.0, 3600)
    assert should_record(10.0, 3610.0, 3600)
    assert not should_record(5000.0, 10.0, 3600)  # late events never move it back


def test_the_shipped_policy_loads() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    assert policy.inactive_lead_retention == timedelta(days=730)
    assert policy.consent_proof_retention >= timedelta(days=3 * 365)


def test_a_bad_policy_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "privacy.yaml"
    path.write_text("inactive_lead_retention: -5\nconsent_proof_retention: soon\n")
    with pytest.raises(PrivacyConfigError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message
    assert "inactive_lead_retention" in message and "consent_proof_retention" in message
    path.write_text("retention_days: 3\n")
    with pytest.raises(PrivacyConfigError, match="retention_days"):
        load_policy(path)


def _topics(tmp_path: Path, lead_topic: str) -> Path:
    """config/topics.yaml with its lead topics' configuration replaced by `lead_topic` (YAML)."""
    shipped = DEFAULT_TOPICS_FILE.read_text()
    old = "    cleanup_policy: delete\n    retention: P6D\n    segment: P1D\n"
    assert shipped.count(old) == 1  # the lead topics' anchor
    path = tmp_path / "topics.yaml"
    path.write_text(shipped.replace(old, lead_topic))
    return path


def test_the_shipped_guard_covers_the_shipped_topics() -> None:
    assert load_policy(DEFAULT_POLICY_FILE, DEFAULT_TOPICS_FILE).erasure_guard == timedelta(days=7)


def test_a_guard_shorter_than_a_lead_topic_keeps_its_records_is_refused_naming_both_files(
    tmp_path: Path,
) -> None:
    """Only a test of the shipped files checked this: `erasure_guard: P1D` beside lead topics of six
    days was taken, and a replay after the guard was purged brought erased leads back."""
    policy = tmp_path / "privacy.yaml"
    policy.write_text("erasure_guard: P1D\n")
    with pytest.raises(PrivacyConfigError) as caught:
        load_policy(policy, DEFAULT_TOPICS_FILE)
    assert str(caught.value) == (
        f"{policy}: erasure_guard: P1D is shorter than leads.interactions's records can stay (P7D: "
        f"retention plus one segment): a replay of it would bring erased leads back in {DEFAULT_TOPICS_FILE}"
    )
    assert load_policy(policy).erasure_guard == timedelta(days=1)  # alone, the file is valid


@pytest.mark.parametrize(
    ("lead_topic", "stay"),
    [
        ("    cleanup_policy: delete\n    retention: P1D\n", "P8D"),  # Kafka's own segment: 7 days
        ("    cleanup_policy: delete\n    retention: P6D\n    segment: P2D\n", "P8D"),
    ],
)
def test_a_lead_topic_s_segment_counts_kafka_s_default_when_unset(
    tmp_path: Path, lead_topic: str, stay: str
) -> None:
    with pytest.raises(PrivacyConfigError, match=rf"can stay \({stay}: retention plus one segment\)"):
        load_policy(DEFAULT_POLICY_FILE, _topics(tmp_path, lead_topic))


def test_a_compacted_lead_topic_keeps_records_for_ever_and_is_refused(tmp_path: Path) -> None:
    topics = _topics(tmp_path, "    cleanup_policy: compact\n    segment: P1D\n")
    kept = r"leads\.interactions's records stay: they are kept for ever"
    with pytest.raises(PrivacyConfigError, match=kept):
        load_policy(DEFAULT_POLICY_FILE, topics)


def test_a_service_does_not_start_on_a_guard_its_topics_outlast(tmp_path: Path) -> None:
    policy = tmp_path / "privacy.yaml"
    policy.write_text("erasure_guard: P2D\n")
    with pytest.raises(PrivacyConfigError, match="erasure_guard: P2D is shorter"):
        create_score(ScoreSettings(privacy_file=policy))
