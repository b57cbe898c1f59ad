"""Topic configuration (`config/topics.yaml`): retention, cleanup policy and replica guarantees.

Why a file: on Apache Kafka a topic created without configs keeps records for the broker's default
(7 days, or whatever the cluster says) and lead topics hold personal data, so how long they stay is
a decision to make and review, not an accident of the cluster. The file is validated at start-up;
a wrong key stops the service with the file, the key and the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from schemas.topics import TopicName
from services.runtime.config_file import load_yaml_model

DEFAULT_TOPICS_FILE = Path(__file__).resolve().parents[2] / "config" / "topics.yaml"

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

# Kafka keys the named fields set; `extra` must not set them a second way.
MANAGED_KEYS = frozenset(
    {
        "cleanup.policy",
        "retention.ms",
        "segment.ms",
        "delete.retention.ms",
        "max.compaction.lag.ms",
        "min.insync.replicas",
    }
)
_KAFKA_KEY = re.compile(r"^[a-z]+(\.[a-z]+)*$")


class TopicConfigError(ValueError):
    """The topics file is missing or invalid; the message names the file, the key and the problem."""


def _ms(value: timedelta) -> str:
    return str(int(value / timedelta(milliseconds=1)))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


KAFKA_DEFAULT_SEGMENT = timedelta(days=7)
"""segment.ms when a topic sets none (Kafka's default)."""


class TopicConfig(_Strict):
    """One topic's Kafka configs, with durations as ISO 8601 (P6D) or seconds."""

    cleanup_policy: CleanupPolicy = Field(description="cleanup.policy")
    retention: timedelta | None = Field(
        None, description="retention.ms: records older than this are deleted (policy with delete)."
    )
    segment: timedelta | None = Field(
        None,
        description="segment.ms: Kafka deletes or compacts whole segments only, so a record can outlive "
        "its retention by up to one segment.",
    )
    delete_retention: timedelta | None = Field(
        None, description="delete.retention.ms: how long a tombstone stays after compaction."
    )
    max_compaction_lag: timedelta | None = Field(
        None,
        description="max.compaction.lag.ms: a value overwritten or deleted is compacted away within "
        "this, however little else changed (else compaction waits for the dirty ratio).",
    )
    extra: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Any other Kafka topic config, passed as is."
    )

    @field_validator("retention", "segment", "delete_retention", "max_compaction_lag")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(milliseconds=1):
            raise ValueError("must be at least one millisecond")
        return value

    @field_validator("extra")
    @classmethod
    def _kafka_keys(cls, value: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        for key in value:
            if key in MANAGED_KEYS:
                raise ValueError(f"{key} is set by its own field (or min_insync_replicas), not in extra")
            if not _KAFKA_KEY.match(key):
                raise ValueError(f"{key!r} does not look like a Kafka topic config (e.g. max.message.bytes)")
        return value

    @model_validator(mode="after")
    def _fits_policy(self) -> TopicConfig:
        deletes, compacts = "delete" in self.cleanup_policy, "compact" in self.cleanup_policy
        if deletes and self.retention is None:
            raise ValueError(f"cleanup_policy {self.cleanup_policy} needs a retention")
        if not deletes and self.retention is not None:
            raise ValueError("retention has no effect with cleanup_policy compact (use compact,delete)")
        if not compacts and (self.delete_retention or self.max_compaction_lag):
            raise ValueError("delete_retention and max_compaction_lag need a cleanup_policy with compact")
        return self

    def kafka_configs(self) -> dict[str, str]:
        """The configs as CreateTopics wants them: Kafka keys, string values, durations in ms."""
        configs: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        for key, duration in (
            ("retention.ms", self.retention),
            ("segment.ms", self.segment),
            ("delete.retention.ms", self.delete_retention),
            ("max.compaction.lag.ms", self.max_compaction_lag),
        ):
            if duration is not None:
                configs[key] = _ms(duration)
        for key, value in self.extra.items():
            configs[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return configs

    def longest_stay(self) -> timedelta | None:
        """How long a record can stay: its retention plus one segment (Kafka deletes whole segments);
        None when it stays for ever (compacted only, or no retention)."""
        if self.retention is None or "delete" not in self.cleanup_policy:
            return None
        return self.retention + (self.segment or KAFKA_DEFAULT_SEGMENT)


class TopicsFile(_Strict):
    """The whole file: every catalogue topic, the services' own topics, changelogs, a default."""

    min_insync_replicas: Literal["auto"] | PositiveInt = Field(
        "auto",
        description="Replicas that must have a write before it is acknowledged (producers use acks=all). "
        "auto: replication factor - 1 when it is 2 or more, else the broker's default.",
    )
    topics: dict[TopicName, TopicConfig] = Field(description="Every topic of schemas/topics.py.")
    internal: dict[str, TopicConfig] = Field(
        default_factory=dict,
        description="Topics a service keeps for itself, by name without LEADPIPE_TOPIC_SUFFIX.",
    )
    changelogs: TopicConfig = Field(description="faust's table changelogs (passed by the app).")
    default: TopicConfig = Field(description="Any other topic created through the runtime.")

    @field_validator("topics")
    @classmethod
    def _whole_catalogue(cls, value: dict[TopicName, TopicConfig]) -> dict[TopicName, TopicConfig]:
        missing = [name.value for name in TopicName if name not in value]
        if missing:
            raise ValueError(
                f"missing {', '.join(missing)}: every catalogue topic needs its retention chosen"
            )
        return value

    @field_validator("internal")
    @classmethod
    def _not_catalogue(cls, value: dict[str, TopicConfig]) -> dict[str, TopicConfig]:
        clash = sorted(set(value) & {name.value for name in TopicName})
        if clash:
            raise ValueError(f"{', '.join(clash)} belong under topics, not internal")
        return value

    @field_validator("changelogs")
    @classmethod
    def _compacted(cls, value: TopicConfig) -> TopicConfig:
        if "compact" not in value.cleanup_policy:
            raise ValueError("cleanup_policy must include compact: with delete alone table rows expire")
        return value

    def for_name(self, name: str) -> TopicConfig:
        """The configuration of a topic by its name without suffix."""
        if name in self.topics:
            return self.topics[TopicName(name)]
        return self.internal.get(name, self.default)

    def replayed_lead_topics(self) -> dict[str, TopicConfig]:
        """The topics whose records a consumer replays from their start (a new group, expired offsets)
        and which would bring an erased lead back: all but the dead letters (an operator looks at the
        erasure log before replaying one) and privacy.requests (an erase request is safe to replay)."""
        kept = {TopicName.DLQ, TopicName.PRIVACY}
        topics = {name.value: config for name, config in self.topics.items() if name not in kept}
        return {**topics, **self.internal, "default": self.default}

    def min_insync(self, replication_factor: int) -> int | None:
        """min.insync.replicas for this replication factor; None leaves the broker's default."""
        if self.min_insync_replicas == "auto":
            return replication_factor - 1 if replication_factor >= 2 else None
        return self.min_insync_replicas


@dataclass(frozen=True)
class TopicPlan:
    """The topics file applied to one deployment: its replication factor and topic suffix."""

    file: TopicsFile
    replication_factor: int
    suffix: str = ""

    @classmethod
    def load(cls, path: Path, replication_factor: int, suffix: str = "") -> TopicPlan:
        """Read and validate the file; also refuse a min_insync_replicas the replicas cannot meet."""
        file = load_yaml_model(path, TopicsFile, TopicConfigError)
        wanted = file.min_insync(replication_factor)
        if wanted is not None and wanted > replication_factor:
            raise TopicConfigError(
                f"{path}: min_insync_replicas: {wanted} is more than the replication factor "
                f"{replication_factor} (LEADPIPE_TOPIC_REPLICATION_FACTOR): every write would be refused"
            )
        return cls(file, replication_factor, suffix)

    def base_name(self, topic: str) -> str:
        """The name without the deployment's suffix (mid-name for nurture: leadpipe-nurture<suffix>-ticks)."""
        if not self.suffix or topic.endswith(self.suffix):
            return topic.removesuffix(self.suffix)
        return topic.replace(self.suffix, "", 1)

    def _with_replicas(self, configs: dict[str, str]) -> dict[str, str]:
        wanted = self.file.min_insync(self.replication_factor)
        return configs if wanted is None else {**configs, "min.insync.replicas": str(wanted)}

    def configs(self, topic: str) -> dict[str, str]:
        """CreateTopics configs for a topic by its physical name."""
        return self._with_replicas(self.file.for_name(self.base_name(topic)).kafka_configs())

    def changelog_configs(self) -> dict[str, str]:
        """Configs for faust's changelog topics (a table's `extra_topic_configs`)."""
        return self._with_replicas(self.file.changelogs.kafka_configs())
