"""The privacy policy (`config/privacy.yaml`): retention periods, validated at start-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.runtime.config_file import iso_duration, load_yaml_model
from services.runtime.topic_config import TopicConfigError, TopicsFile

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "config" / "privacy.yaml"


class PrivacyConfigError(ValueError):
    pass


class PrivacyPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    inactive_lead_retention: timedelta = Field(
        timedelta(days=730), description="A lead without any interaction this long is erased."
    )
    consent_proof_retention: timedelta = Field(
        timedelta(days=3 * 365), description="Consent proof is kept this long after its last change."
    )
    erasure_log_retention: timedelta = Field(
        timedelta(days=3 * 365),
        description="How long the record that an erasure was requested and done (no personal data) is kept.",
    )
    retention_sweep_interval: timedelta = Field(
        timedelta(hours=1), description="How often enrich looks for inactive leads."
    )
    erasure_guard: timedelta = Field(
        timedelta(days=7),
        description="How long services drop records about an erased lead that happened before its erasure.",
    )
    activity_resolution: timedelta = Field(
        timedelta(hours=1), description="Last-activity times are stored no more often than this."
    )

    @field_validator("*")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


def load_policy(path: Path = DEFAULT_POLICY_FILE, topics_file: Path | None = None) -> PrivacyPolicy:
    """The validated policy; the error names the file, the key and the problem. With `topics_file`
    (the deployment's topics, LEADPIPE_TOPICS_FILE), also refused when its erasure guard is shorter
    than a lead record can stay on a topic (`guard_problem`)."""
    policy = load_yaml_model(path, PrivacyPolicy, PrivacyConfigError)
    if topics_file is not None:
        problem = guard_problem(policy, load_yaml_model(topics_file, TopicsFile, TopicConfigError))
        if problem:
            raise PrivacyConfigError(f"{path}: erasure_guard: {problem} in {topics_file}")
    return policy


def guard_problem(policy: PrivacyPolicy, topics: TopicsFile) -> str | None:
    """Why the erasure guard is too short for these topics, or None. A consumer replaying a topic
    from its start must find every erased lead still guarded, or a retained record from before the
    erasure brings the lead back; only a test of the shipped files checked this, so a shortened
    guard (P1D against the lead topics' six days) was taken silently."""
    guard = iso_duration(policy.erasure_guard)
    for name, config in topics.replayed_lead_topics().items():
        stay = config.longest_stay()
        if stay is None:
            return f"{guard} is shorter than {name}'s records stay: they are kept for ever"
        if stay > policy.erasure_guard:
            return (
                f"{guard} is shorter than {name}'s records can stay ({iso_duration(stay)}: retention plus "
                "one segment): a replay of it would bring erased leads back"
            )
    return None
