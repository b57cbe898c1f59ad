"""Settings shared by every service: where the broker and Redis are, and how topics are laid out.

Infrastructure settings use one unprefixed name for all services (``LEADPIPE_BROKER_URL``,
``REDIS_URL``, ...), so one environment configures the whole pipeline; each service's own
settings class adds fields under its prefix (``CAPTURE_``, ``SCORE_``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class ServiceSettings(BaseSettings):
    """Base class: subclasses set ``env_prefix`` and a default ``web_port``."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    broker_url: str = Field(
        DEFAULT_BROKER,
        validation_alias=_env("LEADPIPE_BROKER_URL"),
        description="kafka://host:port[;host:port]",
    )
    redis_url: str = Field(DEFAULT_REDIS, validation_alias=_env("REDIS_URL"))
    topic_partitions: int = Field(4, ge=1, le=256, validation_alias=_env("LEADPIPE_TOPIC_PARTITIONS"))
    topic_replication_factor: int = Field(
        1,
        ge=1,
        le=32767,
        validation_alias=_env("LEADPIPE_TOPIC_REPLICATION_FACTOR"),
        description="Replicas of each topic the services create; 3 on a production cluster, 1 on one broker.",
    )
    topics_file: Path = Field(
        Path(__file__).resolve().parents[2] / "config" / "topics.yaml",
        validation_alias=_env("LEADPIPE_TOPICS_FILE"),
        description="Retention, cleanup policy and min.insync.replicas of the topics (YAML).",
    )
    topic_suffix: str = Field(
        "",
        validation_alias=_env("LEADPIPE_TOPIC_SUFFIX"),
        description="Appended to every topic name; tests use it to keep runs apart.",
    )
    broker_session_timeout: float = Field(
        6.0,
        gt=0,
        validation_alias=_env("LEADPIPE_BROKER_SESSION_TIMEOUT"),
        description="Seconds. Tansu holds a group join for half of it, so keep it short in dev and tests.",
    )
    log_level: str = Field(
        "INFO",
        validation_alias=_env("LEADPIPE_LOG_LEVEL"),
        description=f"One of {', '.join(LOG_LEVELS)} (any case).",
    )
    producer_max_batch_bytes: int = Field(
        256 * 1024,
        ge=1,
        validation_alias=_env("LEADPIPE_PRODUCER_MAX_BATCH_BYTES"),
        description="Producer batch size in bytes (faust's producer_max_batch_size).",
    )
    producer_linger_ms: float = Field(
        0.0,
        ge=0,
        validation_alias=_env("LEADPIPE_PRODUCER_LINGER_MS"),
        description="How long the producer waits to fill a batch (faust's producer_linger). 5 ms "
        "measured no faster in the fifth pass (docs/performance.md), so it stays 0. The records once "
        "lost with it were faust's rebalance race, fixed since (docs/reliability.md, item 11).",
    )
    batch_max_records: int = Field(
        500,
        ge=1,
        validation_alias=_env("LEADPIPE_BATCH_MAX_RECORDS"),
        description="Records a batched agent handles before it waits for its effects' acknowledgement.",
    )
    batch_window_ms: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("LEADPIPE_BATCH_WINDOW_MS"),
        description="How long a batched agent waits for a batch to fill while it is idle: what a "
        "record waits on a quiet pipeline (services/runtime/batch_window.py).",
    )
    batch_window_max_ms: float = Field(
        25.0,
        gt=0,
        validation_alias=_env("LEADPIPE_BATCH_WINDOW_MAX_MS"),
        description="The same wait when the agent spends all its time handling batches; above half "
        "its time, in proportion between the two. Fewer, fuller batches when busy (docs/performance.md).",
    )
    fetch_max_wait_ms: int = Field(
        50,
        ge=0,
        validation_alias=_env("LEADPIPE_FETCH_MAX_WAIT_MS"),
        description="How long the broker may hold a fetch for data (faust hard-codes 1500 ms; Tansu "
        "holds fetches over several partitions for it, which set a 0.9 s latency floor per hop).",
    )
    gc_freeze: bool = Field(
        True,
        validation_alias=_env("LEADPIPE_GC_FREEZE"),
        description="Freeze the heap once start-up ends, out of the garbage collector's full "
        "collections (services/runtime/heap.py), which stopped a worker for 50-250 ms each.",
    )
    data_dir: str = Field(
        ".leadpipe/data",
        validation_alias=_env("LEADPIPE_DATA_DIR"),
        description="Where faust keeps its local files (table metadata); nothing here must survive.",
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(0, ge=0, le=65535)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        """faust's worker takes the level as given: an unknown one stopped the service with "Unable
        to configure handler 'default'", naming neither the variable nor the value."""
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level: one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if "://" not in value:
            value = f"kafka://{value}"
        if not value.startswith("kafka://"):
            raise ValueError("broker_url must look like kafka://host:port")
        return value

    @model_validator(mode="after")
    def _batch_windows_in_order(self) -> Self:
        if "batch_window_max_ms" in self.model_fields_set and self.batch_window_max_ms < self.batch_window_ms:
            raise ValueError(
                f"{self.env_name('batch_window_max_ms')} ({self.batch_window_max_ms}) is below "
                f"{self.env_name('batch_window_ms')} ({self.batch_window_ms}): "
                "the wait when busy cannot be shorter than the wait when idle"
            )
        return self

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets `field` (a service may give a shared one its own)."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @property
    def batch_windows(self) -> tuple[float, float]:
        """(shortest, longest) batch window in seconds. A shortest set above the default longest
        fixes the window there, as `LEADPIPE_BATCH_WINDOW_MS` alone did before the window adapted."""
        shortest = self.batch_window_ms / 1000
        return shortest, max(shortest, self.batch_window_max_ms / 1000)

    @property
    def bootstrap_servers(self) -> str:
        """host:port[,host:port] for aiokafka clients."""
        return self.broker_url.removeprefix("kafka://").replace(";", ",")

    def topic(self, name: str) -> str:
        """The physical topic name for a catalogue name."""
        return f"{name}{self.topic_suffix}"
