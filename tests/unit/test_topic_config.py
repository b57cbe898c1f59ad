"""config/topics.yaml: every topic has a chosen retention, bad values stop start-up with file and key."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from schemas.topics import TopicName
from services.enrich.agents import INBOX
from services.runtime.settings import ServiceSettings
from services.runtime.topic_config import (
    DEFAULT_TOPICS_FILE,
    TopicConfig,
    TopicConfigError,
    TopicPlan,
    TopicsFile,
)
from services.score.app import DECAY_TOPIC

SHIPPED: dict[str, Any] = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())


@pytest.fixture(scope="module")
def shipped() -> TopicsFile:
    return TopicPlan.load(DEFAULT_TOPICS_FILE, 1).file


def _load(tmp_path: Path, data: dict[str, Any], replication_factor: int = 1) -> TopicPlan:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(data))
    return TopicPlan.load(path, replication_factor)


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(SHIPPED))  # no shared YAML aliases: one topic only
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def test_the_shipped_file_names_every_catalogue_topic(shipped: TopicsFile) -> None:
    assert set(shipped.topics) == set(TopicName)
    assert set(SHIPPED["topics"]) == {name.value for name in TopicName}


def test_the_services_own_topics_are_configured_by_name(shipped: TopicsFile) -> None:
    """enrich's inbox carries interactions (lead data); the due checks are derived and short-lived."""
    assert shipped.internal[INBOX] == shipped.topics[TopicName.INTERACTIONS]
    for derived in (DECAY_TOPIC, "leadpipe-nurture-ticks"):
        assert shipped.internal[derived].retention == timedelta(days=1)


def test_every_replayed_lead_topic_deletes_its_records_within_a_week(shipped: TopicsFile) -> None:
    """The erasure guard (7 days) covers them: services/privacy/policy.py refuses a start otherwise.
    The dead letters and privacy.requests are kept longer on purpose (see config/topics.yaml)."""
    replayed = shipped.replayed_lead_topics()
    assert set(replayed) >= {name.value for name in TopicName} - {TopicName.DLQ, TopicName.PRIVACY}
    assert TopicName.DLQ not in replayed and TopicName.PRIVACY not in replayed
    assert {name: config.longest_stay() for name, config in replayed.items()} == dict.fromkeys(
        replayed, timedelta(days=7)
    ) | {
        INBOX: timedelta(days=7),
        DECAY_TOPIC: timedelta(days=1, hours=6),
        "leadpipe-nurture-ticks": timedelta(days=1, hours=6),
    }


def test_erase_requests_stay_longer_than_the_records_they_erase(shipped: TopicsFile) -> None:
    privacy = shipped.topics[TopicName.PRIVACY].retention
    assert privacy is not None and privacy >= timedelta(days=30), "GDPR Art. 12(3): one month"
    for name, config in shipped.topics.items():
        assert config.retention is not None and config.retention <= privacy, name


def test_changelogs_are_compacted_and_forced_to_compact(shipped: TopicsFile) -> None:
    configs = TopicPlan(shipped, 1).changelog_configs()
    assert configs["cleanup.policy"] == "compact"
    assert "retention.ms" not in configs
    assert int(configs["max.compaction.lag.ms"]) <= 7 * 24 * 3600 * 1000
    assert int(configs["delete.retention.ms"]) == 24 * 3600 * 1000


def test_kafka_configs_use_kafka_keys_and_milliseconds() -> None:
    config = TopicConfig.model_validate(
        {
            "cleanup_policy": "compact,delete",
            "retention": "P6D",
            "segment": 3600,
            "delete_retention": "PT1H",
            "extra": {"max.message.bytes": 1048576, "preallocate": True},
        }
    )
    assert config.kafka_configs() == {
        "cleanup.policy": "compact,delete",
        "retention.ms": "518400000",
        "segment.ms": "3600000",
        "delete.retention.ms": "3600000",
        "max.message.bytes": "1048576",
        "preallocate": "true",
    }


@pytest.mark.parametrize(("replication_factor", "expected"), [(1, None), (2, "1"), (3, "2"), (5, "4")])
def test_min_insync_replicas_auto_tolerates_one_broker_down(
    shipped: TopicsFile, replication_factor: int, expected: str | None
) -> None:
    configs = TopicPlan(shipped, replication_factor).configs("leads.interactions")
    assert configs.get("min.insync.replicas") == expected


def test_names_are_looked_up_without_the_suffix(shipped: TopicsFile) -> None:
    plan = TopicPlan(shipped, 1, suffix=".t1")
    assert plan.base_name("privacy.requests.t1") == "privacy.requests"
    assert plan.base_name("leadpipe-nurture.t1-ticks") == "leadpipe-nurture-ticks"
    assert plan.configs("privacy.requests.t1")["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert plan.configs("leadpipe-nurture.t1-ticks")["retention.ms"] == str(24 * 3600 * 1000)
    assert plan.configs("someone-elses.topic") == shipped.default.kafka_configs()


DLQ, SLA = ("topics", "leads.dlq"), ("topics", "leads.sla")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ((*DLQ, "retention"), "-P1D", "topics.leads.dlq.retention: Value error, must be at least one"),
        ((*DLQ, "retention"), 0, "topics.leads.dlq.retention: Value error, must be at least one"),
        ((*DLQ, "retention"), "a week", "topics.leads.dlq.retention: Input should be a valid"),
        ((*SLA, "cleanup_policy"), "wipe", "topics.leads.sla.cleanup_policy: Input should be 'delete'"),
        ((*SLA, "retention"), ..., "topics.leads.sla: Value error, cleanup_policy delete needs"),
        ((*SLA, "retention_ms"), 1, "topics.leads.sla.retention_ms: Extra inputs"),
        (("topics", "privacy.requests"), ..., "topics: Value error, missing privacy.requests: every"),
        (("topics", "leads.all"), SHIPPED["default"], "topics.leads.all.[key]: Input should be"),
        (("internal", "leads.dlq"), SHIPPED["default"], "internal: Value error, leads.dlq belong under"),
        (("changelogs", "cleanup_policy"), "delete", "changelogs: Value error, cleanup_policy delete"),
        (("changelogs", "retention"), "P1D", "retention has no effect with cleanup_policy compact"),
        (("default", "max_compaction_lag"), "P1D", "default: Value error, delete_retention and max_"),
        (("default", "extra"), {"retention.ms": "1"}, "retention.ms is set by its own field"),
        (("default", "extra"), {"Retention MS": "1"}, "does not look like a Kafka topic config"),
        (("min_insync_replicas",), 0, "min_insync_replicas"),
        (("default",), ..., "default: Field required"),
    ],
)
def test_bad_values_are_refused_naming_file_and_key(
    tmp_path: Path, path: tuple[str, ...], value: Any, message: str
) -> None:
    with pytest.raises(TopicConfigError) as caught:
        _load(tmp_path, _changed(path, value))
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'topics.yaml'}: ")
    assert message in text


def test_a_compacted_changelog_must_compact(tmp_path: Path) -> None:
    data = _changed(("changelogs",), {"cleanup_policy": "delete", "retention": "P1D"})
    with pytest.raises(
        TopicConfigError, match="changelogs: Value error, cleanup_policy must include compact"
    ):
        _load(tmp_path, data)


def test_more_in_sync_replicas_than_replicas_is_refused(tmp_path: Path) -> None:
    data = _changed(("min_insync_replicas",), 3)
    assert _load(tmp_path, data, replication_factor=3).configs("leads.sla")["min.insync.replicas"] == "3"
    with pytest.raises(TopicConfigError) as caught:
        _load(tmp_path, data, replication_factor=2)
    assert str(caught.value) == (
        f"{tmp_path / 'topics.yaml'}: min_insync_replicas: 3 is more than the replication factor 2 "
        "(LEADPIPE_TOPIC_REPLICATION_FACTOR): every write would be refused"
    )


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TopicConfigError, match=r"nowhere\.yaml: cannot read"):
        TopicPlan.load(tmp_path / "nowhere.yaml", 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text("topics: [\n")
    with pytest.raises(TopicConfigError, match=r"broken\.yaml: not valid YAML"):
        TopicPlan.load(broken, 1)
    latin = tmp_path / "latin.yaml"  # an editor's Latin-1: a bare UnicodeDecodeError named no file
    latin.write_bytes("# Aufbewahrung für Leads\ntopics: {}\n".encode("latin-1"))
    with pytest.raises(TopicConfigError, match=r"latin\.yaml: not UTF-8 text \(byte 16\): save it as UTF-8"):
        TopicPlan.load(latin, 1)


def test_replication_factor_and_file_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert ServiceSettings().topic_replication_factor == 1
    assert ServiceSettings().topics_file == DEFAULT_TOPICS_FILE
    monkeypatch.setenv("LEADPIPE_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("LEADPIPE_TOPICS_FILE", str(tmp_path / "topics.yaml"))
    settings = ServiceSettings()
    assert settings.topic_replication_factor == 3
    assert settings.topics_file == tmp_path / "topics.yaml"
    monkeypatch.setenv("LEADPIPE_TOPIC_REPLICATION_FACTOR", "0")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ServiceSettings()
